//! `eventflow stats | workers | delayed ... | schedules`: the queue's own keys (see the
//! key table of `eventflow_redis`).

use clap::Subcommand;
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
    let bus = ctx.bus().await?;
    let workers = bus.workers().await.map_err(Failure::redis)?;
    if ctx.json {
        let list: Vec<_> = workers
            .iter()
            .map(|w| json!({ "name": w.name, "pending": w.pending, "idle_ms": w.idle.as_millis() as u64 }))
            .collect();
        out::json(&json!({ "workers": list }));
    } else if workers.is_empty() {
        println!(
            "No consumers in group `{}` of queue `{}`.",
            ctx.group, ctx.queue
        );
    } else {
        let rows: Vec<Vec<String>> = workers
            .iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    w.pending.to_string(),
                    format!("{:.1} s", w.idle.as_secs_f64()),
                ]
            })
            .collect();
        out::table(&["consumer", "pending", "idle"], &rows);
    }
    Ok(0)
}

pub(crate) async fn delayed(ctx: &Ctx, cmd: DelayedCommand) -> Result<i32, Failure> {
    let bus = ctx.bus().await?;
    match cmd {
        DelayedCommand::List { limit } => {
            let page = bus
                .delayed(None, limit.max(1))
                .await
                .map_err(Failure::redis)?;
            if ctx.json {
                let v: Vec<_> = page
                    .events
                    .iter()
                    .map(|w| json!({ "id": w.id, "event": w.name, "handler": w.handler, "due_ms": out::ms(w.due) }))
                    .collect();
                out::json(&json!({ "delayed": v, "more": page.next.is_some() }));
            } else if page.events.is_empty() {
                println!("No delayed events.");
            } else {
                let rows: Vec<Vec<String>> = page
                    .events
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.to_string(),
                            out::time(out::ms(w.due)),
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
                .map_err(|_| Failure::usage(format!("`{id}` is not an event id")))?;
            if !bus.cancel_delayed(id).await.map_err(Failure::redis)? {
                return Err(Failure::not_found(format!("no delayed event {id}")));
            }
            if ctx.json {
                out::json(&json!({ "cancelled": id }));
            } else {
                println!("cancelled {id}");
            }
            Ok(0)
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
