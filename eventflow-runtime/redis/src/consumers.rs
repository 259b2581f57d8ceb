//! The consumers of the group, over every lane (`XINFO CONSUMERS`).

use std::collections::BTreeMap;
use std::time::Duration;

use eventflow_runtime::{ConnectionError, WorkerInfo};
use redis::Value;

use crate::backend::{Shared, conn_err};
use crate::reply::{int, text};

/// Each consumer with its pending entries summed over the lanes and its least idle time.
pub(crate) async fn list(shared: &Shared) -> Result<Vec<WorkerInfo>, ConnectionError> {
    let mut c = shared.publisher();
    let lanes = shared
        .lanes(&mut c)
        .await
        .map_err(|e| conn_err("reading the lanes failed", Some(e)))?;
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for lane in lanes {
        let reply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&lane)
            .arg(&shared.cfg.group)
            .query_async::<Value>(&mut c)
            .await;
        let consumers = match reply {
            Ok(Value::Array(c)) => c,
            // A lane without the group yet has no consumers.
            Ok(_) => continue,
            // A lane with no group (NOGROUP) or no stream yet (ERR no such key).
            Err(e) if matches!(e.code(), Some("NOGROUP" | "ERR")) => {
                continue;
            }
            Err(e) => return Err(conn_err("XINFO CONSUMERS failed", Some(e))),
        };
        for consumer in consumers {
            let fields = crate::reply::pairs(&consumer);
            let Some(name) = fields.get("name").and_then(text) else {
                continue;
            };
            let pending = fields.get("pending").and_then(int).unwrap_or(0);
            let idle = fields.get("idle").and_then(int).unwrap_or(u64::MAX);
            let e = by_name.entry(name).or_insert((0, u64::MAX));
            e.0 = e.0.saturating_add(pending);
            e.1 = e.1.min(idle);
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, (pending, idle))| WorkerInfo::new(name, pending, Duration::from_millis(idle)))
        .collect())
}
