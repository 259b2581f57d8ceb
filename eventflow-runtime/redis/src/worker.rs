//! The worker: reading, claiming and handling stream entries.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eventflow_runtime::backend::broker::{self, Settlement};
use eventflow_runtime::{Delivery, Envelope, Retries};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};

use crate::ack::*;
use crate::backend::{Shared, delayed_member};
use crate::claim::claim_abandoned;
use crate::reply::{Entry, entries_of, int, lane_entries_of, text};
use crate::scripts::OVERSIZED_FIELD;

pub(crate) async fn connect_consumer(
    shared: &Shared,
) -> Result<MultiplexedConnection, redis::RedisError> {
    // A connection of its own: a blocking read must not stall anyone else's commands, and
    // it must not be cut by a response timeout shorter than the block.
    let cfg = AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&shared.keys.stream)
        .arg(&shared.cfg.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut conn)
        .await;
    match created {
        Ok(()) => Ok(conn),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(conn),
        // A server at `maxmemory` refuses `XGROUP CREATE` even when the group exists, while
        // it still lets a consumer read and acknowledge: go on when the group is there.
        Err(e) if group_exists(shared, &mut conn).await => {
            tracing::warn!(error = %e, "eventflow: Redis refused XGROUP CREATE; the group exists, so the worker reads on");
            Ok(conn)
        }
        Err(e) => Err(e),
    }
}

/// Whether the worker's consumer group exists on its stream (`XINFO GROUPS`, a read).
async fn group_exists(shared: &Shared, conn: &mut MultiplexedConnection) -> bool {
    let Ok(Value::Array(groups)) = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&shared.keys.stream)
        .query_async::<Value>(conn)
        .await
    else {
        return false;
    };
    groups.iter().any(|g| {
        crate::reply::pairs(g)
            .get("name")
            .and_then(text)
            .is_some_and(|n| n == shared.cfg.group)
    })
}

pub(crate) async fn consume_loop(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut conn = match connect_consumer(&shared).await {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "eventflow: Redis consumer cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.wake.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = read_until_error(&shared, &mut conn).await {
            tracing::warn!(error = %e, "eventflow: Redis consumer lost its connection; reconnecting");
        }
    }
}

/// Reads and dispatches entries until shutdown (`Ok`) or a Redis error (`Err`).
pub(crate) async fn read_until_error(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    claim_abandoned(shared, conn).await?;
    let mut last_claim = tokio::time::Instant::now();
    // Own pending entries first (after a reconnect), lane by lane, then new ones.
    let one_lane = redis::Script::new(&crate::scripts::read_script());
    for lane in shared.lanes(conn).await? {
        let mut cursor = "0".to_owned();
        while !shared.stopping.load(Ordering::SeqCst) {
            let (_, entries) = read_capped(shared, conn, &one_lane, &lane, &cursor).await?;
            let Some(last) = entries.last() else {
                break;
            };
            cursor = last.id.clone();
            dispatch_redelivered(shared, conn, entries).await?;
        }
    }
    let lanes = redis::Script::new(&crate::scripts::read_lanes_script());
    while !shared.stopping.load(Ordering::SeqCst) {
        if last_claim.elapsed() >= shared.cfg.claim_idle / 2 {
            last_claim = tokio::time::Instant::now();
            claim_abandoned(shared, conn).await?;
        }
        let (bell, entries) = read_lanes(shared, conn, &lanes).await?;
        if entries.is_empty() {
            wait_for_bell(shared, conn, &bell).await?;
        } else {
            for e in entries {
                dispatch_entry(shared, e, 1).await;
            }
        }
    }
    Ok(())
}

/// Reads new entries of every lane, highest priority first, with the bell's last id.
async fn read_lanes(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    script: &redis::Script,
) -> Result<(String, Vec<Entry>), redis::RedisError> {
    let reply: Value = script
        .key(&shared.keys.stream)
        .key(&shared.keys.bell)
        .key(&shared.keys.lanes)
        .arg(&shared.cfg.group)
        .arg(&shared.consumer)
        .arg(shared.cfg.batch)
        .arg(read_limit(shared.cfg.max_entry_bytes))
        .arg(KEPT_FIELD_BYTES)
        .invoke_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Ok(("0-0".into(), Vec::new()));
    };
    let bell = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
    let entries = parts.get(1).map(lane_entries_of).unwrap_or_default();
    Ok((bell, entries))
}

/// The largest entry a worker receives whole: `max_entry_bytes` and room for the field
/// names and a retry's `handler` field beside the envelope.
pub(crate) fn read_limit(max_entry_bytes: usize) -> usize {
    max_entry_bytes.saturating_add(1024)
}

/// Reads entries of one lane's `stream` for this consumer from `cursor` (`0` for its own
/// pending ones) through the capped read script, with the bell's last id as of the read.
async fn read_capped(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    script: &redis::Script,
    stream: &str,
    cursor: &str,
) -> Result<(String, Vec<Entry>), redis::RedisError> {
    let reply = script
        .key(stream)
        .key(&shared.keys.bell)
        .arg(&shared.cfg.group)
        .arg(&shared.consumer)
        .arg(shared.cfg.batch)
        .arg(cursor)
        .arg(read_limit(shared.cfg.max_entry_bytes))
        .arg(KEPT_FIELD_BYTES)
        .invoke_async::<Value>(conn)
        .await;
    let reply = match reply {
        Ok(r) => r,
        // A lane whose group no read has created yet: nothing of this consumer's there.
        Err(e) if e.code() == Some("NOGROUP") => return Ok(("0-0".into(), Vec::new())),
        Err(e) => return Err(e),
    };
    let Value::Array(parts) = reply else {
        return Ok(("0-0".into(), Vec::new()));
    };
    let bell = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
    let entries = parts
        .get(1)
        .map(|l| entries_of(l, stream))
        .unwrap_or_default();
    Ok((bell, entries))
}

/// Blocks until a publisher rings the bell after `since`, or for `block` at most (entries
/// other programs add to the stream without ringing are read then).
async fn wait_for_bell(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    since: &str,
) -> Result<(), redis::RedisError> {
    redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(u64::try_from(shared.cfg.block.as_millis()).unwrap_or(u64::MAX))
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&shared.keys.bell)
        .arg(since)
        .query_async::<Value>(conn)
        .await?;
    Ok(())
}

/// Dispatches entries that were delivered before (own pending or claimed), each with its
/// delivery count.
pub(crate) async fn dispatch_redelivered(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
    entries: Vec<Entry>,
) -> Result<(), redis::RedisError> {
    let counts = delivery_counts(shared, conn, &entries).await?;
    for e in entries {
        let n = counts.get(&e.id).copied().unwrap_or(1);
        dispatch_entry(shared, e, n).await;
    }
    Ok(())
}

/// How many times each entry has been delivered (`XPENDING`, extended form).
pub(crate) async fn delivery_counts(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    entries: &[Entry],
) -> Result<HashMap<String, u32>, redis::RedisError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(HashMap::new());
    };
    // The entries come from one lane (one claim or pending read).
    let reply: Value = redis::cmd("XPENDING")
        .arg(&first.stream)
        .arg(&shared.cfg.group)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&shared.consumer)
        .query_async(conn)
        .await?;
    let mut out = HashMap::new();
    if let Value::Array(rows) = reply {
        for row in rows {
            if let Value::Array(cols) = row
                && let (Some(id), Some(n)) =
                    (cols.first().and_then(text), cols.get(3).and_then(int))
            {
                // A count read from the server: saturate rather than wrap.
                out.insert(id, u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }
    Ok(out)
}

pub(crate) async fn dispatch_entry(shared: &Arc<Shared>, entry: Entry, delivered: u32) {
    // Re-reading own pending entries after a reconnect (or claiming) can meet an entry
    // that is still being handled here: it is not started twice.
    let Some(running) = crate::lease::Running::enter(shared, &entry.stream, &entry.id) else {
        return;
    };
    let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        // Leaves the running set however the task ends (a panic included), so that the
        // entry's lease stops being refreshed and another consumer can claim it.
        let _running = running;
        handle_entry(&shared, entry, delivered).await;
        drop(permit);
    });
}

/// The size of a field's value as Redis sent it.
fn field_len(v: &Value) -> usize {
    match v {
        Value::BulkString(b) => b.len(),
        Value::SimpleString(s) => s.len(),
        _ => 0,
    }
}

/// Why an entry is not a valid envelope, or the envelope and its target handler. An
/// entry over `max_bytes` (which publish refuses, so one written by hand) is refused
/// before it is copied or decoded.
pub(crate) fn parse_entry(
    fields: Option<&HashMap<String, Value>>,
    max_bytes: usize,
) -> Result<(Envelope, Option<String>), String> {
    let fields = fields.ok_or("the entry has no fields (it was trimmed from the stream)")?;
    // The read script sent only the size and a cut of an oversized entry.
    let size = match fields.get(OVERSIZED_FIELD).and_then(int) {
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => fields.iter().fold(0usize, |n, (k, v)| {
            n.saturating_add(k.len()).saturating_add(field_len(v))
        }),
    };
    if size > read_limit(max_bytes) {
        return Err(format!(
            "the entry is {size} bytes, over max_entry_bytes ({max_bytes}); it was not read"
        ));
    }
    let raw = fields.get("envelope").ok_or_else(|| {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        format!("the entry has no `envelope` field (fields: {names:?})")
    })?;
    let text = text(raw).ok_or("the `envelope` field is not text")?;
    let envelope = broker::decode_entry(&text)?;
    let handler = fields.get("handler").and_then(self::text);
    Ok((envelope, handler))
}

/// What an invalid entry's dead letter keeps of each field: at most this many bytes.
pub(crate) const KEPT_FIELD_BYTES: usize = 4096;

/// An invalid entry's fields for its dead letter, each cut to [`KEPT_FIELD_BYTES`] (the
/// cut says how long the field was).
pub(crate) fn raw_fields_json(fields: Option<&HashMap<String, Value>>) -> serde_json::Value {
    let keep = |v: &Value| -> String {
        match v {
            Value::BulkString(b) if b.len() > KEPT_FIELD_BYTES => format!(
                "{}... ({} bytes in all)",
                String::from_utf8_lossy(&b[..KEPT_FIELD_BYTES]),
                b.len()
            ),
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => text(other).unwrap_or_else(|| format!("{other:?}")),
        }
    };
    let map: serde_json::Map<String, serde_json::Value> = fields
        .map(|f| {
            f.iter()
                .map(|(k, v)| {
                    // An oversized entry came cut by the read script: say so.
                    let kept = match int(v).filter(|_| k == OVERSIZED_FIELD) {
                        Some(n) => {
                            format!("{n} bytes in all; each field cut to {KEPT_FIELD_BYTES} bytes")
                        }
                        None => keep(v),
                    };
                    (k.clone(), serde_json::Value::String(kept))
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::Value::Object(map)
}

pub(crate) async fn handle_entry(shared: &Arc<Shared>, entry: Entry, delivered: u32) {
    let (mut envelope, handler) = match parse_entry(
        entry.fields.as_ref(),
        shared.cfg.max_entry_bytes,
    ) {
        Ok(v) => v,
        Err(reason) => {
            tracing::error!(id = %entry.id, %reason, "eventflow: invalid stream entry sent to dead letters");
            let fields = raw_fields_json(entry.fields.as_ref());
            let letter = broker::invalid_entry(&entry.id, fields, reason, delivered);
            // Left pending when the letter cannot be stored: claimed and tried again.
            if store_dead_letter(shared, letter).await {
                ack(shared, &entry.stream, &entry.id, Vec::new()).await;
            }
            return;
        }
    };
    if let Err(letter) = broker::redelivered(
        &mut envelope,
        handler.as_deref(),
        delivered,
        shared.cfg.max_deliveries,
    ) {
        if store_dead_letter(shared, *letter).await {
            ack(shared, &entry.stream, &entry.id, Vec::new()).await;
        }
        return;
    }
    let Some(sink) = shared.sink.get() else {
        return;
    };
    let report = sink
        .deliver(Delivery {
            envelope: envelope.clone(),
            handler: handler.clone(),
            retries: Retries::ByBackend,
        })
        .await;
    if report.outcomes.is_empty()
        && !report.cancelled
        && (handler.is_some() || !sink.allows_unhandled())
    {
        // No handler of this worker takes it: leave it for a worker of the group that has
        // one, up to the delivery bound, then dead-letter it saying why.
        match broker::unrouted(
            &envelope,
            handler.as_deref(),
            delivered,
            shared.cfg.max_deliveries,
        ) {
            None => crate::claim::leave_for_others(shared, &entry.key()),
            Some(letter) => {
                if store_dead_letter(shared, *letter).await {
                    ack(shared, &entry.stream, &entry.id, Vec::new()).await;
                }
            }
        }
        return;
    }
    let retries = match broker::settle(&envelope, &report) {
        // Shutdown cut it short: leave it pending for another consumer to claim.
        Settlement::LeavePending => return,
        Settlement::Ack(retries) => retries,
        _ => return,
    };
    // Answered before the acknowledgement: a worker that dies in between delivers the
    // entry again and answers twice, and the asker takes the first.
    crate::requests::answer(shared, &envelope, &report).await;
    let mut members = Vec::with_capacity(retries.len());
    for r in retries {
        match serde_json::to_string(&r.envelope) {
            Ok(json) => members.push((
                u64::try_from(r.delay.as_millis()).unwrap_or(u64::MAX),
                delayed_member(&json, Some(&r.handler), &entry.stream),
            )),
            Err(e) => tracing::error!(error = %e, "eventflow: cannot serialize a retry"),
        }
    }
    ack(shared, &entry.stream, &entry.id, members).await;
}
