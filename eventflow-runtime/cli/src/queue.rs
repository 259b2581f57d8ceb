//! `eventflow stats | workers | delayed ... | schedules`: the queue's own keys (see the
//! key table of `eventflow_redis`).

use clap::Subcommand;
use redis::Value;
use serde_json::json;

use crate::out::{self, cell};
use crate::{Ctx, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum DelayedCommand {
    /// Lists the events waiting for their time, soonest first.
    #[command(after_help = "Example:\n  eventflow --queue orders delayed list --limit 20")]
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Cancels a waiting event by its event id: it will not be delivered.
    #[command(after_help = "Example:\n  eventflow --queue orders delayed cancel 0d6b...9a")]
    Cancel {
        /// The event's id.
        id: String,
    },
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The streams of the queue: the default one and every priority lane.
async fn streams(
    ctx: &Ctx,
    c: &mut redis::aio::MultiplexedConnection,
) -> Result<Vec<String>, Failure> {
    let lanes: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{}:lanes", ctx.queue))
        .arg(0)
        .arg(-1)
        .query_async(c)
        .await
        .map_err(Failure::redis)?;
    let mut all = vec![format!("{}:stream", ctx.queue)];
    all.extend(lanes);
    Ok(all)
}

pub(crate) async fn stats(ctx: &Ctx) -> Result<i32, Failure> {
    let bus = ctx.bus().await?;
    let health = bus.health().await;
    let mut c = ctx.conn().await?;
    let mut length = 0u64;
    for s in streams(ctx, &mut c).await? {
        let n: u64 = redis::cmd("XLEN")
            .arg(&s)
            .query_async(&mut c)
            .await
            .map_err(Failure::redis)?;
        length = length.saturating_add(n);
    }
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(format!("{}:delayed", ctx.queue))
        .query_async(&mut c)
        .await
        .map_err(Failure::redis)?;
    let v = json!({
        "queue": ctx.queue,
        "group": ctx.group,
        "reachable": health.reachable,
        "stream_length": length,
        "lag": health.lag,
        "pending": health.pending,
        "delayed": delayed,
        "dead_letters": health.dead_letters,
    });
    if ctx.json {
        out::json(&v);
    } else {
        let show = |o: Option<u64>| o.map_or("—".to_owned(), |n| n.to_string());
        out::table(
            &[
                "queue",
                "group",
                "entries",
                "lag",
                "pending",
                "delayed",
                "dead letters",
            ],
            &[vec![
                ctx.queue.clone(),
                ctx.group.clone(),
                length.to_string(),
                show(health.lag),
                show(health.pending),
                delayed.to_string(),
                show(health.dead_letters),
            ]],
        );
    }
    Ok(0)
}

pub(crate) async fn workers(ctx: &Ctx) -> Result<i32, Failure> {
    let mut c = ctx.conn().await?;
    // Consumer name to (pending, idle ms, lanes seen).
    let mut by_name: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for s in streams(ctx, &mut c).await? {
        let reply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&s)
            .arg(&ctx.group)
            .query_async::<Value>(&mut c)
            .await;
        let Ok(Value::Array(consumers)) = reply else {
            continue;
        };
        for cons in consumers {
            let fields: Vec<Value> = match cons {
                Value::Array(f) => f,
                Value::Map(m) => m.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => continue,
            };
            let mut name = None;
            let (mut pending, mut idle) = (0u64, u64::MAX);
            for kv in fields.chunks(2) {
                if let [k, v] = kv {
                    match text(k).as_deref() {
                        Some("name") => name = text(v),
                        Some("pending") => {
                            pending = text(v).and_then(|t| t.parse().ok()).unwrap_or(0)
                        }
                        Some("idle") => {
                            idle = text(v).and_then(|t| t.parse().ok()).unwrap_or(u64::MAX)
                        }
                        _ => {}
                    }
                }
            }
            if let Some(n) = name {
                let e = by_name.entry(n).or_insert((0, u64::MAX));
                e.0 = e.0.saturating_add(pending);
                e.1 = e.1.min(idle);
            }
        }
    }
    if ctx.json {
        let list: Vec<_> = by_name
            .iter()
            .map(|(n, (p, i))| json!({ "name": n, "pending": p, "idle_ms": i }))
            .collect();
        out::json(&json!({ "workers": list }));
    } else if by_name.is_empty() {
        println!(
            "No consumers in group `{}` of queue `{}`.",
            ctx.group, ctx.queue
        );
    } else {
        let rows: Vec<Vec<String>> = by_name
            .iter()
            .map(|(n, (p, i))| {
                vec![
                    n.clone(),
                    p.to_string(),
                    format!("{:.1} s", *i as f64 / 1000.0),
                ]
            })
            .collect();
        out::table(&["consumer", "pending", "idle"], &rows);
    }
    Ok(0)
}

/// A delayed entry: its member (as stored), due time, envelope id and name, handler.
struct Waiting {
    member: String,
    due_ms: u64,
    id: String,
    name: String,
    handler: Option<String>,
}

fn parse_member(member: String, score: f64) -> Waiting {
    let d: serde_json::Value = serde_json::from_str(&member).unwrap_or_default();
    let env: serde_json::Value = d["e"]
        .as_str()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    Waiting {
        due_ms: if score.is_finite() && score > 0.0 {
            score as u64
        } else {
            0
        },
        id: env["id"].as_str().unwrap_or("?").to_owned(),
        name: env["name"].as_str().unwrap_or("?").to_owned(),
        handler: d["h"].as_str().map(str::to_owned),
        member,
    }
}

async fn waiting(
    ctx: &Ctx,
    c: &mut redis::aio::MultiplexedConnection,
    from: usize,
    n: usize,
) -> Result<Vec<Waiting>, Failure> {
    let pairs: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(format!("{}:delayed", ctx.queue))
        .arg(from)
        .arg(from.saturating_add(n).saturating_sub(1))
        .arg("WITHSCORES")
        .query_async(c)
        .await
        .map_err(Failure::redis)?;
    Ok(pairs.into_iter().map(|(m, s)| parse_member(m, s)).collect())
}

pub(crate) async fn delayed(ctx: &Ctx, cmd: DelayedCommand) -> Result<i32, Failure> {
    let mut c = ctx.conn().await?;
    match cmd {
        DelayedCommand::List { limit } => {
            let list = waiting(ctx, &mut c, 0, limit.max(1)).await?;
            if ctx.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|w| json!({ "id": w.id, "event": w.name, "handler": w.handler, "due_ms": w.due_ms }))
                    .collect();
                out::json(&json!({ "delayed": v }));
            } else if list.is_empty() {
                println!("No delayed events.");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.clone(),
                            out::time(w.due_ms),
                            cell(&w.name, 30),
                            w.handler
                                .clone()
                                .unwrap_or_else(|| "(every handler)".into()),
                        ]
                    })
                    .collect();
                out::table(&["event id", "due", "event", "for"], &rows);
            }
            Ok(0)
        }
        DelayedCommand::Cancel { id } => {
            let id = uuid::Uuid::parse_str(&id)
                .map_err(|_| Failure::usage(format!("`{id}` is not an event id")))?
                .to_string();
            let mut from = 0;
            loop {
                let chunk = waiting(ctx, &mut c, from, 500).await?;
                if chunk.is_empty() {
                    return Err(Failure::not_found(format!("no delayed event {id}")));
                }
                if let Some(w) = chunk.iter().find(|w| w.id == id) {
                    let removed: i64 = redis::cmd("ZREM")
                        .arg(format!("{}:delayed", ctx.queue))
                        .arg(&w.member)
                        .query_async(&mut c)
                        .await
                        .map_err(Failure::redis)?;
                    if removed == 0 {
                        return Err(Failure::not_found(format!(
                            "delayed event {id} was delivered meanwhile"
                        )));
                    }
                    if ctx.json {
                        out::json(&json!({ "cancelled": id }));
                    } else {
                        println!("cancelled {id} ({})", w.name);
                    }
                    return Ok(0);
                }
                from += chunk.len();
            }
        }
    }
}

pub(crate) async fn schedules(ctx: &Ctx) -> Result<i32, Failure> {
    let mut c = ctx.conn().await?;
    let prefix = format!("{}:sched:", ctx.queue);
    let mut cursor = 0u64;
    let mut rows: Vec<(String, Option<u64>)> = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut c)
            .await
            .map_err(Failure::redis)?;
        for k in keys {
            let last: Option<u64> = redis::cmd("GET")
                .arg(&k)
                .query_async(&mut c)
                .await
                .map_err(Failure::redis)?;
            rows.push((k.trim_start_matches(&prefix).to_owned(), last));
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    rows.sort();
    if ctx.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, t)| json!({ "name": n, "last_tick_ms": t }))
            .collect();
        out::json(&json!({ "schedules": v }));
    } else if rows.is_empty() {
        println!("No scheduled function has run on queue `{}`.", ctx.queue);
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(n, t)| vec![n.clone(), t.map_or("—".to_owned(), out::time)])
            .collect();
        out::table(&["schedule", "last tick"], &table);
    }
    Ok(0)
}
