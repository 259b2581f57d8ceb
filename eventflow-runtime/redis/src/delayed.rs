//! Listing and cancelling the events of the delayed set (`QUEUE:delayed`: delayed
//! publishes and scheduled retries, scored by due time in milliseconds).

use std::time::{Duration, UNIX_EPOCH};

use eventflow_runtime::{ConnectionError, DelayedEvent, DelayedPage, EventId};

use crate::backend::{Shared, conn_err};

/// One member of the delayed set, read back: the event and the handler it is for.
fn parse(member: &str, score: f64) -> Option<DelayedEvent> {
    let d: serde_json::Value = serde_json::from_str(member).ok()?;
    let env: serde_json::Value = serde_json::from_str(d["e"].as_str()?).ok()?;
    let id: EventId = env["id"].as_str()?.parse().ok()?;
    let due_ms = if score.is_finite() && score > 0.0 {
        score as u64
    } else {
        0
    };
    Some(
        DelayedEvent::new(
            id,
            env["name"].as_str().unwrap_or("?"),
            UNIX_EPOCH + Duration::from_millis(due_ms),
        )
        .for_handler(d["h"].as_str().map(str::to_owned))
        .with_priority(
            env["priority"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
        ),
    )
}

async fn range(
    shared: &Shared,
    from: usize,
    n: usize,
) -> Result<Vec<(String, f64)>, ConnectionError> {
    let mut c = shared.publisher();
    redis::cmd("ZRANGE")
        .arg(&shared.keys.delayed)
        .arg(from)
        .arg(from.saturating_add(n).saturating_sub(1))
        .arg("WITHSCORES")
        .query_async(&mut c)
        .await
        .map_err(|e| conn_err("reading the delayed set failed", Some(e)))
}

/// A page of the delayed set by position, soonest first.
pub(crate) async fn page(
    shared: &Shared,
    cursor: Option<&str>,
    limit: usize,
) -> Result<DelayedPage, ConnectionError> {
    let start: usize = match cursor {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| conn_err("the cursor is not one this backend returned", None))?,
    };
    let limit = limit.clamp(1, eventflow_runtime::backend::MAX_DELAYED_PAGE);
    let members = range(shared, start, limit + 1).await?;
    let more = members.len() > limit;
    let events = members
        .iter()
        .take(limit)
        .filter_map(|(m, s)| parse(m, *s))
        .collect();
    Ok(DelayedPage::new(
        events,
        more.then(|| (start + limit).to_string()),
    ))
}

/// Removes every member of the delayed set for event `id`; whether there was one. It reads
/// the set in chunks (the work grows with its size), and removes by member, so an entry
/// the promoter moved meanwhile is not counted.
pub(crate) async fn cancel(shared: &Shared, id: EventId) -> Result<bool, ConnectionError> {
    let mut from = 0;
    let mut found = Vec::new();
    loop {
        let chunk = range(shared, from, 1000).await?;
        if chunk.is_empty() {
            break;
        }
        from += chunk.len();
        found.extend(
            chunk
                .into_iter()
                .filter(|(m, s)| parse(m, *s).is_some_and(|e| e.id == id))
                .map(|(m, _)| m),
        );
    }
    if found.is_empty() {
        return Ok(false);
    }
    let mut c = shared.publisher();
    let removed: i64 = redis::cmd("ZREM")
        .arg(&shared.keys.delayed)
        .arg(&found)
        .query_async(&mut c)
        .await
        .map_err(|e| conn_err("removing a delayed event failed", Some(e)))?;
    Ok(removed > 0)
}
