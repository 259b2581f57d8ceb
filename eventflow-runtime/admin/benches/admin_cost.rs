//! What the admin app costs the bus, measured in one run:
//!
//! - `dispatch` of one event to one Inline handler, with no admin app, and with the admin
//!   router served over TCP and its overview polled every second (the dashboard open);
//! - the time to answer `GET /api/dead-letters?limit=50` on Redis with 1,000 and with
//!   100,000 dead letters (it must not grow with their number).
//!
//! The Redis part needs Redis at `EVENTFLOW_REDIS_URL` (default `redis://127.0.0.1:6379/0`)
//! and is skipped without it.

#[path = "../../benches/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_redis::{RedisBusExt, RedisConfig};
use eventflow_runtime::{
    DeadLetter, Envelope, Event, EventBus, Handler, HandlerError, HandlerErrorKind, Payload,
};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
}

impl Event for Ping {
    const NAME: &'static str = "bench.ping";
}

async fn counting_bus() -> EventBus {
    let hits = Arc::new(AtomicU64::new(0));
    EventBus::builder()
        .without_registry()
        .handler(Handler::typed(
            "count",
            "bench.ping",
            move |_p: Ping, _ctx| {
                hits.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), HandlerError>(()) }
            },
        ))
        .build()
        .await
        .expect("bus")
}

/// Serves the admin router of `bus` and polls its overview every second, like an open
/// dashboard; returns the tasks to stop.
async fn open_dashboard(bus: &EventBus) -> Vec<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    let app = eventflow_admin::router(bus.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let poller = tokio::spawn(async move {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let _ = s
                    .write_all(
                        b"GET /api/overview HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    vec![server, poller]
}

fn url() -> String {
    std::env::var("EVENTFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Fills the Redis dead-letter hash of `queue` up to `n` letters (pipelined `HSET`s of the
/// store's own JSON).
async fn fill_letters(queue: &str, from: usize, n: usize) {
    let client = redis::Client::open(url()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let now = SystemTime::now();
    let mut i = from;
    while i < n {
        let mut pipe = redis::pipe();
        for _ in 0..1000.min(n - i) {
            let env = Envelope::with_payload(
                "invoice.due".into(),
                Payload::json(serde_json::json!({ "n": i })),
            );
            let letter = DeadLetter::new(
                "billing",
                env,
                "card declined",
                HandlerErrorKind::Failed,
                3,
                now,
                now,
            );
            let json = serde_json::to_string(&letter).expect("json");
            pipe.cmd("HSET")
                .arg(format!("{queue}:dead"))
                .arg(letter.id.to_string())
                .arg(json)
                .ignore();
            i += 1;
        }
        let _: () = pipe.query_async(&mut c).await.expect("HSET");
    }
}

async fn del_prefix(prefix: &str) {
    let client = redis::Client::open(url()).expect("url");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    for k in keys {
        let _: Result<(), _> = redis::cmd("DEL").arg(k).query_async(&mut c).await;
    }
}

/// Mean time of `GET /api/dead-letters?limit=50` over `times` requests.
async fn page_time(app: &axum::Router, times: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..times {
        let req = Request::builder()
            .uri("/api/dead-letters?limit=50")
            .header("host", "bench")
            .body(Body::empty())
            .expect("request");
        let res = app.clone().oneshot(req).await.expect("answer");
        assert!(res.status().is_success());
        let body = res.into_body().collect().await.expect("body").to_bytes();
        assert!(body.len() > 100);
    }
    start.elapsed() / times
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let plain = rt.block_on(counting_bus());
    let watched = rt.block_on(counting_bus());
    let tasks = rt.block_on(open_dashboard(&watched));
    let mut g = c.benchmark_group("admin_cost");
    g.measurement_time(Duration::from_secs(6));
    // Each twice, in turn, so that neither gets the warmer part of the run.
    for (round, key, bus) in [
        (1, "dispatch_plain", &plain),
        (1, "dispatch_with_dashboard", &watched),
        (2, "dispatch_plain", &plain),
        (2, "dispatch_with_dashboard", &watched),
    ] {
        g.bench_function(format!("{key}/round_{round}"), |b| {
            b.to_async(&rt).iter_custom(|iters| async move {
                let start = Instant::now();
                for i in 0..iters {
                    let r = bus.dispatch(Ping { n: i }).await.expect("dispatch");
                    std::hint::black_box(r);
                }
                support::record(key, iters, start.elapsed())
            })
        });
    }
    g.finish();
    for t in tasks {
        t.abort();
    }
    support::report_ratio(
        "dispatch with a dashboard polled every second vs without",
        "dispatch_with_dashboard",
        "dispatch_plain",
    );

    let reachable = rt.block_on(async {
        let client = redis::Client::open(url()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    });
    if reachable.is_none() {
        eprintln!(
            "SKIPPED the dead-letter page figure: Redis at {} cannot be reached",
            url()
        );
        return;
    }
    let queue = format!(
        "eventflow-bench-admin:{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    rt.block_on(async {
        let mut cfg = RedisConfig::new(url());
        cfg.queue = queue.clone();
        let bus = EventBus::builder()
            .without_registry()
            .allow_unhandled(true)
            .redis_config(cfg)
            .build()
            .await
            .expect("redis bus");
        let app = eventflow_admin::router(bus);
        fill_letters(&queue, 0, 1_000).await;
        let small = page_time(&app, 50).await;
        fill_letters(&queue, 1_000, 100_000).await;
        let large = page_time(&app, 50).await;
        println!(
            "PAGE GET /api/dead-letters?limit=50 on Redis: {:.2} ms with 1,000 letters, {:.2} ms with 100,000 = {:.2}x",
            small.as_secs_f64() * 1e3,
            large.as_secs_f64() * 1e3,
            large.as_secs_f64() / small.as_secs_f64()
        );
        del_prefix(&queue).await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
