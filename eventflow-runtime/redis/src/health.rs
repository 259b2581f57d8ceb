//! What the backend reports about itself: reachability, and lag and pending summed over
//! the lanes.

use eventflow_runtime::{BackendHealth, DeadLetterStore};
use redis::Value;

use crate::backend::Shared;
use crate::reply::{int, pairs, text};

pub(crate) async fn health(shared: &Shared) -> BackendHealth {
    let mut c = shared.publisher();
    let mut h = BackendHealth::default();
    match redis::cmd("PING").query_async::<String>(&mut c).await {
        Ok(_) => h.reachable = true,
        Err(e) => {
            h.detail = Some(format!("PING failed: {e}"));
            return h;
        }
    }
    // Summed over the lanes (counts from the server: saturating).
    let lanes = shared
        .lanes(&mut c)
        .await
        .unwrap_or_else(|_| vec![shared.keys.stream.clone()]);
    for lane in lanes {
        if let Ok(Value::Array(groups)) = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&lane)
            .query_async::<Value>(&mut c)
            .await
        {
            for g in groups {
                let map = pairs(&g);
                if map.get("name").and_then(text).as_deref() == Some(shared.cfg.group.as_str()) {
                    let add = |sum: Option<u64>, v: Option<u64>| match (sum, v) {
                        (Some(a), Some(b)) => Some(a.saturating_add(b)),
                        (a, b) => a.or(b),
                    };
                    h.pending = add(h.pending, map.get("pending").and_then(int));
                    h.lag = add(h.lag, map.get("lag").and_then(int));
                }
            }
        }
    }
    h.dead_letters = shared.dead.len().await.ok().map(|n| n as u64);
    h
}
