//! Dead letters kept in a Redis hash.

use eventflow_runtime::{BoxFuture, ConnectionError, DeadLetter, DeadLetterStore};
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
