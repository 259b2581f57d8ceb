//! Redis Streams: events per second from publish to acknowledged handling, with one and two
//! workers, against raw `redis` commands doing the same work (pipelined XADD of the same
//! JSON, XREADGROUP COUNT 64, decode, XACK); and publish-to-handler latency p50/p99.
//! Priority lanes: the same events spread over three lanes against one stream, one
//! worker.
//! Needs Redis at `EVENTFLOW_REDIS_URL` (default `redis://127.0.0.1:6379/0`). Target: at
//! least 60% of the raw throughput.

#[path = "../../benches/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventflow_redis::{RedisBusExt, RedisConfig};
use eventflow_runtime::{Envelope, Event, EventBus, Handler, HandlerError, PublishOptions};
use redis::Value;
use serde::{Deserialize, Serialize};

const N: u64 = 5_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
    sent_us: u64,
}

impl Event for Tick {
    const NAME: &'static str = "bench.tick";
}

fn url() -> String {
    std::env::var("EVENTFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
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

/// Raw: pipelined XADD of `n` envelopes; `workers` consumers XREADGROUP COUNT 64, decode
/// the JSON, run the handler, XACK. Returns when every entry is acknowledged.
async fn raw_run(prefix: &str, workers: usize, n: u64) {
    let client = redis::Client::open(url()).expect("url");
    let stream = format!("{prefix}:stream");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await;
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let stream = stream.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            while done.load(Ordering::Acquire) < n {
                let reply: Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg(format!("c{w}"))
                    .arg("COUNT")
                    .arg(64)
                    .arg("BLOCK")
                    .arg(20)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut c)
                    .await
                    .expect("xreadgroup");
                let ids = handle_raw(&reply);
                if ids.is_empty() {
                    continue;
                }
                let _: i64 = redis::cmd("XACK")
                    .arg(&stream)
                    .arg("g")
                    .arg(&ids)
                    .query_async(&mut c)
                    .await
                    .expect("xack");
                done.fetch_add(ids.len() as u64, Ordering::AcqRel);
            }
        }));
    }
    let mut pipe = redis::pipe();
    for i in 0..n {
        let json = serde_json::to_string(&Envelope::new(Tick { n: i, sent_us: 0 })).expect("json");
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("envelope")
            .arg(json)
            .ignore();
        if pipe.len() == 500 {
            let _: () = pipe.query_async(&mut c).await.expect("xadd");
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        let _: () = pipe.query_async(&mut c).await.expect("xadd");
    }
    for t in tasks {
        t.await.expect("worker");
    }
}

fn handle_raw(reply: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    let Value::Array(streams) = reply else {
        return ids;
    };
    for s in streams {
        let Value::Array(parts) = s else { continue };
        let Some(Value::Array(entries)) = parts.get(1) else {
            continue;
        };
        for e in entries {
            let Value::Array(kv) = e else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) = (kv.first(), kv.get(1))
            else {
                continue;
            };
            if let Some(Value::BulkString(json)) = fields.get(1)
                && let Ok(env) = serde_json::from_slice::<Envelope>(json)
                && let Ok(t) = env.payload.decode::<Tick>()
            {
                std::hint::black_box(t.n);
            }
            ids.push(String::from_utf8_lossy(id).into_owned());
        }
    }
    ids
}

struct Setup {
    publisher: EventBus,
    workers: Vec<EventBus>,
    handled: Arc<AtomicU64>,
    latencies: Arc<std::sync::Mutex<Vec<u64>>>,
    prefix: String,
}

async fn eventflow_setup(workers: usize) -> Setup {
    let prefix = format!(
        "eventflow-bench:{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut cfg = RedisConfig::new(url());
    cfg.queue = prefix.clone();
    cfg.block = Duration::from_millis(20);
    cfg.pool_min = 2;
    let handled = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut ws = Vec::new();
    for _ in 0..workers {
        let (h, l) = (handled.clone(), latencies.clone());
        let bus = EventBus::builder()
            .without_registry()
            .redis_config(cfg.clone())
            .handler(Handler::typed(
                "tick",
                "bench.tick",
                move |t: Tick, _ctx| {
                    let (h, l) = (h.clone(), l.clone());
                    async move {
                        if t.sent_us > 0 {
                            l.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(now_us().saturating_sub(t.sent_us));
                        }
                        h.fetch_add(1, Ordering::AcqRel);
                        Ok::<(), HandlerError>(())
                    }
                },
            ))
            .build()
            .await
            .expect("worker bus");
        bus.start().await.expect("start");
        ws.push(bus);
    }
    let publisher = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .expect("publisher");
    Setup {
        publisher,
        workers: ws,
        handled,
        latencies,
        prefix,
    }
}

/// Publishes `n` events from 64 concurrent publishers (with `lanes`, at priorities 0, 5
/// and 10 in turn: three priority lanes); returns when all are handled and acknowledged.
async fn eventflow_run(s: &Setup, n: u64, lanes: bool) {
    let start_count = s.handled.load(Ordering::Acquire);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (bus, next) = (s.publisher.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let tick = Tick { n: i, sent_us: 0 };
                if lanes {
                    let priority = (i % 3) as i32 * 5;
                    bus.publish_with(tick, PublishOptions::new().priority(priority))
                        .await
                        .expect("publish");
                } else {
                    bus.publish(tick).await.expect("publish");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    while s.handled.load(Ordering::Acquire) - start_count < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while s.workers[0].health().await.pending != Some(0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
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
            "SKIPPED redis_throughput: Redis at {} cannot be reached",
            url()
        );
        return;
    }
    let mut g = c.benchmark_group("redis_publish_to_ack");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for workers in [1usize, 2] {
        let raw_key = format!("raw_{workers}");
        g.bench_function(format!("raw_redis/{workers}_worker(s)"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let key = raw_key.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let prefix = format!(
                            "eventflow-bench-raw:{}",
                            &uuid::Uuid::new_v4().simple().to_string()[..8]
                        );
                        let start = Instant::now();
                        raw_run(&prefix, workers, N).await;
                        total += start.elapsed();
                        del_prefix(&prefix).await;
                    }
                    support::record(&key, iters * N, total)
                }
            })
        });
        let setup = rt.block_on(eventflow_setup(workers));
        let ef_key = format!("eventflow_{workers}");
        g.bench_function(format!("eventflow/{workers}_worker(s)"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let key = ef_key.clone();
                let setup = &setup;
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        eventflow_run(setup, N, false).await;
                    }
                    support::record(&key, iters * N, start.elapsed())
                }
            })
        });
        if workers == 1 {
            // The same events spread over three priority lanes (three streams).
            g.bench_function("eventflow_3_lanes/1_worker(s)", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let setup = &setup;
                    async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            eventflow_run(setup, N, true).await;
                        }
                        support::record("eventflow_lanes_1", iters * N, start.elapsed())
                    }
                })
            });
        }
        if workers == 1 {
            // Latency: one event at a time, 1,000 times.
            rt.block_on(async {
                for i in 0..1_000 {
                    setup
                        .publisher
                        .publish(Tick {
                            n: i,
                            sent_us: now_us(),
                        })
                        .await
                        .expect("publish");
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            });
            let mut l = setup
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            l.sort_unstable();
            if !l.is_empty() {
                let p = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
                println!(
                    "LATENCY publish-to-handler, 1 worker: p50 {} us, p99 {} us ({} samples)",
                    p(0.5),
                    p(0.99),
                    l.len()
                );
            }
        }
        rt.block_on(async {
            for w in &setup.workers {
                let _ = w.shutdown().await;
            }
            del_prefix(&setup.prefix).await;
        });
    }
    g.finish();
    support::report_ratio(
        "time per event, 1 worker, three priority lanes vs one stream",
        "eventflow_lanes_1",
        "eventflow_1",
    );
    for workers in [1, 2] {
        let (ef, raw) = (format!("eventflow_{workers}"), format!("raw_{workers}"));
        println!(
            "THROUGHPUT {workers} worker(s): eventflow {:.0} events/s, raw {:.0} events/s = {:.0}% of raw",
            1e9 / support::mean_ns(&ef),
            1e9 / support::mean_ns(&raw),
            100.0 * support::mean_ns(&raw) / support::mean_ns(&ef)
        );
        support::report_ratio(
            &format!("time per event, {workers} worker(s), eventflow vs raw"),
            &ef,
            &raw,
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
