//! A worker process for the multi-process Redis tests.
//!
//! `eventflow-test-worker URL QUEUE worker CLAIM_IDLE_MS MAX_IN_FLIGHT`: consumes `work.*`;
//! each handled event is recorded with `RPUSH QUEUE:handled "n consumer"`; an event whose
//! payload has `"fail": true` fails permanently. Prints `ready` once consuming, and shuts
//! down gracefully when its standard input closes.
//!
//! `eventflow-test-worker URL QUEUE failed list|retry ID|remove ID`: the failed-jobs API;
//! `list` prints one dead letter per line as JSON.
//!
//! `eventflow-test-worker URL QUEUE scheduled`: runs the registered scheduled function
//! `worker.tick` (every 100ms), which records `RPUSH QUEUE:ticks "tick pid"`.
//!
//! `eventflow-test-worker DB_URL PREFIX model-crash`: creates a `Member` in a SQLite
//! (`sqlite:PATH`) or PostgreSQL store whose relay is off, prints `committed`, and aborts:
//! the model event is left in the outbox.
//!
//! `eventflow-test-worker URL QUEUE trace`: handles `trace.start` by publishing
//! `trace.next`, and records each with `RPUSH QUEUE:trace "name tenant request-id"`; on
//! shutdown prints every span it made as `SPAN name fields`.

use std::time::Duration;

use std::sync::OnceLock;

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::sql::SqlStoreBuilderExt;
use eventflow::{EventBus, Handler, HandlerContext, HandlerError, ScheduleContext};
use eventflow_tests::SpanCapture;
use tokio::io::AsyncReadExt;

/// Where `worker.tick` records its runs: a connection and the list's key.
static TICKS: OnceLock<(redis::aio::ConnectionManager, String)> = OnceLock::new();

#[eventflow::scheduled(every = "100ms", name = "worker.tick")]
async fn tick(ctx: &ScheduleContext) -> Result<(), HandlerError> {
    let Some((conn, key)) = TICKS.get() else {
        return Err(HandlerError::msg("not set up"));
    };
    let tick = ctx
        .tick()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(HandlerError::new)?
        .as_millis();
    redis::cmd("RPUSH")
        .arg(key)
        .arg(format!("{tick} {}", std::process::id()))
        .query_async::<i64>(&mut conn.clone())
        .await
        .map_err(HandlerError::new)?;
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: eventflow-test-worker URL QUEUE (worker CLAIM_IDLE_MS MAX_IN_FLIGHT | failed list|retry ID|remove ID)"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        usage();
    }
    let (url, queue, mode) = (&args[1], &args[2], args[3].as_str());
    if mode == "model-crash" {
        return model_crash(url, queue).await;
    }
    if mode == "hung-plain-fn" {
        return hung_plain_fn().await;
    }
    let mut cfg = RedisConfig::new(url.as_str());
    cfg.queue = queue.clone();
    cfg.block = Duration::from_millis(100);
    match mode {
        "worker" => {
            let claim_ms: u64 = args
                .get(4)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| usage());
            cfg.claim_idle = Duration::from_millis(claim_ms);
            cfg.max_in_flight = args
                .get(5)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| usage());
            worker(cfg).await
        }
        "failed" => failed(cfg, &args[4..]).await,
        "scheduled" => scheduled(cfg).await,
        "trace" => trace(cfg).await,
        _ => usage(),
    }
}

async fn worker(cfg: RedisConfig) -> Result<(), Box<dyn std::error::Error>> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let record = redis::aio::ConnectionManager::new(client).await?;
    let handled_key = format!("{}:handled", cfg.queue);
    let me = std::process::id().to_string();
    let handler = Handler::new("record", "work.*", move |env, _ctx| {
        let mut record = record.clone();
        let key = handled_key.clone();
        let me = me.clone();
        async move {
            let payload = env.payload_json()?;
            if payload["fail"].as_bool() == Some(true) {
                return Err(HandlerError::permanent_msg("asked to fail"));
            }
            let n = payload["n"].as_u64().unwrap_or(u64::MAX);
            if let Some(ms) = payload["sleep_ms"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            redis::cmd("RPUSH")
                .arg(&key)
                .arg(format!("{n} {me}"))
                .query_async::<i64>(&mut record)
                .await
                .map_err(HandlerError::new)?;
            Ok(())
        }
    });
    let bus = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .handler(handler)
        .build();
    let bus = bus.await?;
    bus.start().await?;
    println!("ready");
    wait_for_stdin_to_close().await;
    let report = bus.shutdown().await?;
    eprintln!("worker stopped; unfinished: {}", report.unfinished.len());
    Ok(())
}

async fn model_crash(db: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .build()
        .await?;
    let builder = eventflow::Store::builder(&bus).prefix(prefix).relay(false);
    let store = match db.strip_prefix("sqlite:") {
        Some(path) => builder.sqlite(path).await?,
        None => builder.postgres(db).await?,
    };
    let m = store
        .create(eventflow_tests::members::Member::new("crash", "c@x.org"))
        .await?;
    println!("committed {}", m.id.unwrap_or(-1));
    // Dies between the commit and the publish.
    std::process::abort();
}

async fn wait_for_stdin_to_close() {
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

async fn scheduled(cfg: RedisConfig) -> Result<(), Box<dyn std::error::Error>> {
    let client = redis::Client::open(cfg.url.as_str())?;
    let conn = redis::aio::ConnectionManager::new(client).await?;
    let _ = TICKS.set((conn, format!("{}:ticks", cfg.queue)));
    let bus = EventBus::builder()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await?;
    bus.start().await?;
    println!("ready");
    wait_for_stdin_to_close().await;
    bus.shutdown().await?;
    Ok(())
}

async fn trace(cfg: RedisConfig) -> Result<(), Box<dyn std::error::Error>> {
    let capture = SpanCapture::default();
    tracing::subscriber::set_global_default(capture.clone())?;
    let client = redis::Client::open(cfg.url.as_str())?;
    let conn = redis::aio::ConnectionManager::new(client).await?;
    let key = format!("{}:trace", cfg.queue);
    let record = move |ctx: &HandlerContext| {
        let (mut conn, key) = (conn.clone(), key.clone());
        let entry = format!(
            "{} {} {}",
            ctx.envelope().name,
            ctx.headers().get("tenant").unwrap_or("-"),
            ctx.headers().get("request-id").unwrap_or("-"),
        );
        async move {
            redis::cmd("RPUSH")
                .arg(key)
                .arg(entry)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(HandlerError::new)
        }
    };
    let r1 = record.clone();
    let bus = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .handler(Handler::new("relay", "trace.start", move |_env, ctx| {
            let recorded = r1(&ctx);
            async move {
                recorded.await?;
                ctx.publish_raw("trace.next", serde_json::json!({})).await?;
                Ok(())
            }
        }))
        .handler(Handler::new("sink", "trace.next", move |_env, ctx| {
            let recorded = record(&ctx);
            async move {
                recorded.await?;
                Ok(())
            }
        }))
        .build()
        .await?;
    bus.start().await?;
    println!("ready");
    wait_for_stdin_to_close().await;
    bus.shutdown().await?;
    for (name, fields) in capture.spans() {
        println!("SPAN {name} {fields}");
    }
    Ok(())
}

async fn failed(cfg: RedisConfig, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await?;
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("list"), _) => {
            for d in bus.dead_letters().await? {
                println!("{}", serde_json::to_string(&d)?);
            }
        }
        (Some("retry"), Some(id)) => {
            let r = bus.retry_dead_letter(id.parse()?).await?;
            println!("{r:?}");
        }
        (Some("remove"), Some(id)) => println!("{}", bus.remove_dead_letter(id.parse()?).await?),
        _ => usage(),
    }
    Ok(())
}

/// A memory bus whose plain `fn` handler never returns (a 100 ms timeout abandons each
/// attempt): publishes 200 events, waits for every attempt to be abandoned, shuts down and
/// returns from `main`. The process must then exit; it prints what the bus counted.
async fn hung_plain_fn() -> Result<(), Box<dyn std::error::Error>> {
    let bus = EventBus::builder()
        .without_registry()
        .blocking_threads(8)
        .handler(
            Handler::blocking("hangs", "hang.*", |_env, _ctx| {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            })
            .timeout(Duration::from_millis(100)),
        )
        .build()
        .await?;
    for n in 0..200 {
        bus.publish_raw("hang.now", serde_json::json!({ "n": n }))
            .await?;
    }
    let start = std::time::Instant::now();
    let abandoned = |bus: &EventBus| {
        bus.metrics()
            .handler("hangs")
            .map_or(0, |m| m.abandoned_attempts)
    };
    while abandoned(&bus) < 8 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = bus.shutdown().await;
    let m = bus.metrics();
    println!(
        "abandoned={} busy={} max={}",
        abandoned(&bus),
        m.blocking_threads.0,
        m.blocking_threads.1
    );
    Ok(())
}
