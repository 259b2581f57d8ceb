//! Dead letters kept in a Redis hash.

use eventflow_runtime::{
    BoxFuture, ConnectionError, DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterStore,
};
use redis::aio::ConnectionManager;

use crate::backend::conn_err;
use crate::scripts::*;

/// Dead letters kept in a Redis hash, visible to every process of the queue.
pub struct RedisDeadLetters {
    pub(crate) conn: ConnectionManager,
    pub(crate) key: String,
}

impl DeadLetterStore for RedisDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&letter).map_err(|e| {
                conn_err(
                    format!("cannot serialize dead letter {}: {e}", letter.id),
                    None,
                )
            })?;
            let mut c = self.conn.clone();
            redis::cmd("HSET")
                .arg(&self.key)
                .arg(letter.id.to_string())
                .arg(json)
                .query_async::<i64>(&mut c)
                .await
                .map_err(|e| conn_err("HSET of a dead letter failed", Some(e)))?;
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let values: Vec<String> = redis::cmd("HVALS")
                .arg(&self.key)
                .query_async(&mut c)
                .await
                .map_err(|e| conn_err("HVALS of dead letters failed", Some(e)))?;
            let mut out: Vec<DeadLetter> = values
                .iter()
                .filter_map(|v| match serde_json::from_str(v) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "eventflow: skipping an unreadable dead letter in Redis");
                        None
                    }
                })
                .collect();
            out.sort_by_key(|l: &DeadLetter| l.failed_at);
            Ok(out)
        })
    }

    /// Pages with `HSCAN` (the cursor is Redis's): each call reads a bounded number of
    /// entries, so a hash of a million letters pages as fast as one of a hundred. With a
    /// filter a page may come back short, with a cursor to go on from.
    fn page<'a>(
        &'a self,
        query: &'a DeadLetterQuery,
    ) -> BoxFuture<'a, Result<DeadLetterPage, ConnectionError>> {
        Box::pin(async move {
            let size = query.page_size();
            let mut cursor: u64 = match query.cursor.as_deref() {
                None => 0,
                Some(c) => c
                    .parse()
                    .map_err(|_| conn_err("the cursor is not one this store returned", None))?,
            };
            let mut letters = Vec::with_capacity(size);
            // Scanned at most per call, so a filter matching little still answers soon.
            let mut budget = size.saturating_mul(10).max(100);
            let mut c = self.conn.clone();
            loop {
                let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                    .arg(&self.key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(size.min(budget).max(1))
                    .query_async(&mut c)
                    .await
                    .map_err(|e| conn_err("HSCAN of dead letters failed", Some(e)))?;
                budget = budget.saturating_sub(pairs.len().max(1));
                for (_, v) in pairs {
                    match serde_json::from_str::<DeadLetter>(&v) {
                        Ok(l) if query.matches(&l) => letters.push(l),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "eventflow: skipping an unreadable dead letter in Redis")
                        }
                    }
                }
                cursor = next;
                if cursor == 0 || letters.len() >= size || budget == 0 {
                    break;
                }
            }
            // HSCAN's COUNT is a hint: a small hash (listpack-encoded) answers whole in one
            // step, so such a page may hold more than `limit` letters. None is dropped: the
            // cursor moves past exactly what the page holds.
            let next = (cursor != 0).then(|| cursor.to_string());
            Ok(DeadLetterPage::new(letters, next))
        })
    }

    fn get(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<String> = redis::cmd("HGET")
                .arg(&self.key)
                .arg(id.to_string())
                .query_async(&mut c)
                .await
                .map_err(|e| conn_err("reading a dead letter failed", Some(e)))?;
            match v {
                None => Ok(None),
                Some(v) => serde_json::from_str(&v)
                    .map(Some)
                    .map_err(|e| conn_err(format!("dead letter {id} is unreadable: {e}"), None)),
            }
        })
    }

    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<String> = redis::Script::new(TAKE)
                .key(&self.key)
                .arg(id.to_string())
                .invoke_async(&mut c)
                .await
                .map_err(|e| conn_err("taking a dead letter failed", Some(e)))?;
            match v {
                None => Ok(None),
                Some(v) => serde_json::from_str(&v)
                    .map(Some)
                    .map_err(|e| conn_err(format!("dead letter {id} is unreadable: {e}"), None)),
            }
        })
    }

    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            redis::cmd("HLEN")
                .arg(&self.key)
                .query_async::<usize>(&mut c)
                .await
                .map_err(|e| conn_err("HLEN of dead letters failed", Some(e)))
        })
    }
}

impl std::fmt::Debug for RedisDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeadLetters").finish_non_exhaustive()
    }
}
