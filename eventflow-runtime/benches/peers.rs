//! eventflow against a peer in one run: jaeb 0.5, an in-process Rust event bus with
//! retries and dead letters.
//!
//! - one event to one handler that increments a counter: a direct call through a boxed
//!   future (the floor), eventflow `dispatch` to an Inline async handler with defaults
//!   (metrics and tracing on, nothing installed to receive them), and jaeb `publish` to a
//!   sync handler (which runs inline);
//! - events per second through a handler on its own task: eventflow `publish` to a `Tokio`
//!   handler, jaeb `publish` to an async handler, and a raw tokio channel feeding tasks
//!   (publish N, wait until the handler ran N times).
//!
//! The output's RATIO lines give each comparison.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventflow_runtime::{Event, EventBus, Executor, ExecutorConfig, Handler, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const BATCH: u64 = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
}

impl Event for Ping {
    const NAME: &'static str = "bench.ping";
}

/// Counts handler runs and wakes the waiter at a target.
struct Done {
    count: AtomicU64,
    target: AtomicU64,
    notify: Notify,
}

impl Done {
    fn new() -> Arc<Done> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
        })
    }

    fn hit(&self) {
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.target.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
    }

    /// Arms the waiter for `more` runs from now.
    fn arm(&self, more: u64) -> tokio::sync::futures::Notified<'_> {
        let n = self.count.load(Ordering::Acquire);
        self.target.store(n + more, Ordering::Release);
        self.notify.notified()
    }
}

struct JaebSync(Arc<AtomicU64>);

impl jaeb::SyncEventHandler<Ping> for JaebSync {
    fn handle(&self, event: &Ping, _bus: &jaeb::EventBus) -> jaeb::HandlerResult {
        self.0
            .fetch_add(std::hint::black_box(event.n) & 1 | 1, Ordering::Relaxed);
        Ok(())
    }
}

struct JaebAsync(Arc<Done>);

impl jaeb::EventHandler<Ping> for JaebAsync {
    async fn handle(&self, event: &Ping, _bus: &jaeb::EventBus) -> jaeb::HandlerResult {
        std::hint::black_box(event.n);
        self.0.hit();
        Ok(())
    }
}

type Boxed = Box<
    dyn Fn(Ping) -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>> + Send + Sync,
>;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // One event, one handler, a counter.
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let direct: Boxed = Box::new(move |p: Ping| {
        let h = h.clone();
        Box::pin(async move {
            h.fetch_add(std::hint::black_box(p.n) & 1 | 1, Ordering::Relaxed);
            Ok(())
        })
    });
    let h = hits.clone();
    let eventflow = rt
        .block_on(
            EventBus::builder()
                .without_registry()
                .handler(Handler::typed(
                    "count",
                    "bench.ping",
                    move |p: Ping, _ctx| {
                        h.fetch_add(std::hint::black_box(p.n) & 1 | 1, Ordering::Relaxed);
                        async { Ok::<(), HandlerError>(()) }
                    },
                ))
                .build(),
        )
        .expect("eventflow bus");
    let jaeb_sync = rt.block_on(async {
        let bus = jaeb::EventBus::builder().build().await.expect("jaeb bus");
        let sub = bus
            .subscribe::<Ping, _, _>(JaebSync(hits.clone()))
            .await
            .expect("jaeb subscribe");
        (bus, sub)
    });

    let mut g = c.benchmark_group("peers_one_event");
    g.bench_function("direct_boxed_call", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let direct = &direct;
            async move {
                let start = Instant::now();
                for n in 0..iters {
                    direct(Ping { n }).await.expect("direct");
                }
                support::record("direct", iters, start.elapsed())
            }
        })
    });
    g.bench_function("eventflow_dispatch_defaults", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = &eventflow;
            async move {
                let start = Instant::now();
                for n in 0..iters {
                    std::hint::black_box(bus.dispatch(Ping { n }).await.expect("dispatch"));
                }
                support::record("eventflow_dispatch", iters, start.elapsed())
            }
        })
    });
    g.bench_function("jaeb_publish_sync_handler", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = &jaeb_sync.0;
            async move {
                let start = Instant::now();
                for n in 0..iters {
                    bus.publish(Ping { n }).await.expect("jaeb publish");
                }
                support::record("jaeb_sync", iters, start.elapsed())
            }
        })
    });
    g.finish();

    // Events per second through a handler on its own task.
    let done = Done::new();
    let d = done.clone();
    let tokio_bus = rt
        .block_on(
            EventBus::builder()
                .without_registry()
                .handler(
                    Handler::typed("count", "bench.ping", move |p: Ping, _ctx| {
                        let d = d.clone();
                        async move {
                            std::hint::black_box(p.n);
                            d.hit();
                            Ok::<(), HandlerError>(())
                        }
                    })
                    .executor(Executor::Tokio, ExecutorConfig::new()),
                )
                .build(),
        )
        .expect("eventflow bus");
    let jaeb_async = rt.block_on(async {
        let bus = jaeb::EventBus::builder().build().await.expect("jaeb bus");
        let sub = bus
            .subscribe::<Ping, _, _>(JaebAsync(done.clone()))
            .await
            .expect("jaeb subscribe");
        (bus, sub)
    });
    let mut g = c.benchmark_group("peers_throughput");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("raw_channel_tasks", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let done = done.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ping>();
                    let notified = done.arm(BATCH);
                    let d = done.clone();
                    let consumer = tokio::spawn(async move {
                        while let Some(p) = rx.recv().await {
                            let d = d.clone();
                            tokio::spawn(async move {
                                std::hint::black_box(p.n);
                                d.hit();
                            });
                        }
                    });
                    for n in 0..BATCH {
                        tx.send(Ping { n }).expect("send");
                    }
                    drop(tx);
                    notified.await;
                    consumer.await.expect("consumer");
                }
                support::record("raw_throughput", iters * BATCH, start.elapsed())
            }
        })
    });
    g.bench_function("eventflow_publish_tokio_handler", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (bus, done) = (tokio_bus.clone(), done.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let notified = done.arm(BATCH);
                    for n in 0..BATCH {
                        bus.publish(Ping { n }).await.expect("publish");
                    }
                    notified.await;
                }
                support::record("eventflow_throughput", iters * BATCH, start.elapsed())
            }
        })
    });
    g.bench_function("jaeb_publish_async_handler", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let done = done.clone();
            let bus = &jaeb_async.0;
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let notified = done.arm(BATCH);
                    for n in 0..BATCH {
                        bus.publish(Ping { n }).await.expect("jaeb publish");
                    }
                    notified.await;
                }
                support::record("jaeb_throughput", iters * BATCH, start.elapsed())
            }
        })
    });
    g.finish();

    support::report_ratio(
        "dispatch vs direct boxed call",
        "eventflow_dispatch",
        "direct",
    );
    support::report_ratio(
        "dispatch vs jaeb sync publish",
        "eventflow_dispatch",
        "jaeb_sync",
    );
    support::report_ratio(
        "jaeb sync publish vs direct boxed call",
        "jaeb_sync",
        "direct",
    );
    let per_sec = |k: &str| 1e9 / support::mean_ns(k);
    println!(
        "THROUGHPUT eventflow Tokio handler {:.0} events/s, jaeb async handler {:.0} events/s ({:.2}x jaeb), raw channel {:.0} events/s",
        per_sec("eventflow_throughput"),
        per_sec("jaeb_throughput"),
        per_sec("eventflow_throughput") / per_sec("jaeb_throughput"),
        per_sec("raw_throughput"),
    );
    support::report_ratio(
        "time per event, eventflow Tokio handler vs raw channel",
        "eventflow_throughput",
        "raw_throughput",
    );
    rt.block_on(async {
        let _ = jaeb_sync.0.shutdown().await;
        let _ = jaeb_async.0.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
