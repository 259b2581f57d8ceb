//! Claiming entries other consumers left pending, and leaving entries this worker has no
//! handler for to the others.
//!
//! Workers of one group may have different handlers. An entry no handler of the worker
//! that read it takes is not acknowledged: the worker leaves it pending and does not claim
//! it back for a while ([`LEFT_FOR`] times `claim_idle`), so that a worker of the group that
//! has the handler claims it once it has been idle for `claim_idle`. After `max_deliveries`
//! deliveries without a taker it is dead-lettered, saying so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::backend::Shared;
use crate::reply::{entries_of, entry_key, text};
use crate::worker::{KEPT_FIELD_BYTES, dispatch_redelivered, read_limit};

/// How long (in `claim_idle`s) a worker leaves an entry it has no handler for to others.
pub(crate) const LEFT_FOR: u32 = 3;

/// Entries this worker left to others, and when; at most this many are remembered.
const MAX_LEFT: usize = 10_000;

/// Entries this worker left to the others, by id, with when.
#[derive(Default)]
pub(crate) struct Left(std::sync::Mutex<HashMap<String, Instant>>);

impl Left {
    fn skips(&self, id: &str, within: std::time::Duration) -> bool {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).is_some_and(|at| at.elapsed() < within)
    }
}

/// Notes that this worker left entry `id` (an [`Entry::key`](crate::reply::Entry::key))
/// pending for a worker that has its handler.
pub(crate) fn leave_for_others(shared: &Shared, id: &str) {
    tracing::debug!(%id, "eventflow: no handler here takes the entry; left to the other workers");
    let window = shared.cfg.claim_idle.saturating_mul(LEFT_FOR);
    let mut map = shared.left.0.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_LEFT {
        map.retain(|_, at| at.elapsed() < window);
    }
    if map.len() < MAX_LEFT {
        map.insert(id.to_owned(), Instant::now());
    }
}

/// Claims entries idle longer than `claim_idle` in any consumer's pending list (this
/// one's included, after a restart) of every lane, except those this worker recently
/// left to others.
pub(crate) async fn claim_abandoned(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    for lane in shared.lanes(conn).await? {
        claim_in(shared, conn, &lane).await?;
    }
    Ok(())
}

/// [`claim_abandoned`] in one lane's stream.
async fn claim_in(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Result<(), redis::RedisError> {
    let idle = u64::try_from(shared.cfg.claim_idle.as_millis()).unwrap_or(u64::MAX);
    let window = shared.cfg.claim_idle.saturating_mul(LEFT_FOR);
    let mut start = "-".to_owned();
    let script = redis::Script::new(&crate::scripts::claim_script());
    loop {
        let reply = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&shared.cfg.group)
            .arg("IDLE")
            .arg(idle)
            .arg(&start)
            .arg("+")
            .arg(shared.cfg.batch)
            .query_async::<Value>(conn)
            .await;
        let reply = match reply {
            Ok(r) => r,
            // A lane whose group the read script has not created yet has nothing pending.
            Err(e) if e.code() == Some("NOGROUP") => return Ok(()),
            Err(e) => return Err(e),
        };
        let Value::Array(rows) = reply else {
            return Ok(());
        };
        let ids: Vec<String> = rows
            .iter()
            .filter_map(|r| match r {
                Value::Array(cols) => cols.first().and_then(text),
                _ => None,
            })
            .collect();
        let Some(last) = ids.last().cloned() else {
            return Ok(());
        };
        let wanted: Vec<&String> = ids
            .iter()
            .filter(|id| !shared.left.skips(&entry_key(stream, id), window))
            .collect();
        if !wanted.is_empty() {
            // The idle bound again: an entry another worker refreshed meanwhile stays its.
            // Through the script, so that an oversized entry is not received whole.
            let mut invocation = script.key(stream);
            invocation
                .arg(&shared.cfg.group)
                .arg(&shared.consumer)
                .arg(idle)
                .arg(read_limit(shared.cfg.max_entry_bytes))
                .arg(KEPT_FIELD_BYTES)
                .arg(&wanted);
            let claimed: Value = invocation.invoke_async(conn).await?;
            let entries = entries_of(&claimed, stream);
            if !entries.is_empty() {
                tracing::info!(
                    count = entries.len(),
                    "eventflow: claimed entries abandoned by another consumer"
                );
            }
            dispatch_redelivered(shared, conn, entries).await?;
        }
        if ids.len() < shared.cfg.batch {
            return Ok(());
        }
        // The next page starts after the last id seen (exclusive range).
        start = format!("({last}");
    }
}
