//! A worker process for the multi-process Redis tests.
//!
//! `eventflow-test-worker URL QUEUE worker CLAIM_IDLE_MS MAX_IN_FLIGHT`: consumes `work.*`;
//! each handled event is recorded with `RPUSH QUEUE:handled "n consumer"`; an event whose
//! payload has `"fail": true` fails permanently. Prints `ready` once consuming, and shuts
//! down gracefully when its standard input closes.
//!
//! `eventflow-test-worker URL QUEUE failed list|retry ID|remove ID`: the failed-jobs API;
//! `list` prints one dead letter per line as JSON.

use std::time::Duration;

use eventflow::{EventBus, Handler, HandlerError, RedisConfig};
use tokio::io::AsyncReadExt;

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
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    let report = bus.shutdown().await?;
    eprintln!("worker stopped; unfinished: {}", report.unfinished.len());
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
