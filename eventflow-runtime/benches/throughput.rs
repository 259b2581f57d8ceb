//! (c) Events per second published to one `Tokio` handler with `concurrency = 64`, against
//! a raw tokio channel feeding tasks bounded by a 64-permit semaphore (the same work
//! without eventflow).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventflow_runtime::{Event, EventBus, Executor, ExecutorConfig, Handler, HandlerError};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, mpsc};

const BATCH: u64 = 10_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

impl Event for Tick {
    const NAME: &'static str = "metric.tick";
}

struct Done {
    count: AtomicU64,
    notify: Notify,
}

impl Done {
    fn hit(&self, target: u64) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == target {
            self.notify.notify_one();
        }
    }
}

async fn work(t: Tick) {
    std::hint::black_box(t.n.wrapping_mul(31));
    tokio::task::yield_now().await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(Done {
        count: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let d2 = done.clone();
    let bus = rt
        .block_on(
            EventBus::builder()
                .without_registry()
                .handler(
                    Handler::typed("tick", "metric.tick", move |t: Tick, _ctx| {
                        let d = d2.clone();
                        async move {
                            work(t).await;
                            d.hit(BATCH);
                            Ok::<(), HandlerError>(())
                        }
                    })
                    .executor(Executor::Tokio, ExecutorConfig::new())
                    .concurrency(64),
                )
                .build(),
        )
        .expect("bus");

    let mut g = c.benchmark_group("throughput_tokio_handler_concurrency_64");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    g.bench_function("raw_channel_semaphore_64", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                let done = Arc::new(Done {
                    count: AtomicU64::new(0),
                    notify: Notify::new(),
                });
                let (tx, mut rx) = mpsc::unbounded_channel::<Tick>();
                let sem = Arc::new(Semaphore::new(64));
                let d = done.clone();
                let consumer = tokio::spawn(async move {
                    while let Some(t) = rx.recv().await {
                        let permit = sem.clone().acquire_owned().await.expect("semaphore");
                        let d = d.clone();
                        tokio::spawn(async move {
                            work(t).await;
                            d.hit(BATCH);
                            drop(permit);
                        });
                    }
                });
                let notified = done.notify.notified();
                for n in 0..BATCH {
                    tx.send(Tick { n }).expect("send");
                }
                drop(tx);
                notified.await;
                consumer.await.expect("consumer");
            }
            support::record("raw", iters * BATCH, start.elapsed())
        })
    });
    g.bench_function("eventflow_publish", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let bus = bus.clone();
            let done = done.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    done.count.store(0, Ordering::Release);
                    let notified = done.notify.notified();
                    for n in 0..BATCH {
                        bus.publish(Tick { n }).await.expect("publish");
                    }
                    notified.await;
                }
                support::record("eventflow", iters * BATCH, start.elapsed())
            }
        })
    });
    g.finish();
    let per_sec = |k: &str| 1e9 / support::mean_ns(k);
    println!(
        "THROUGHPUT eventflow {:.0} events/s, raw channel {:.0} events/s",
        per_sec("eventflow"),
        per_sec("raw")
    );
    support::report_ratio(
        "time per event, eventflow vs raw channel",
        "eventflow",
        "raw",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
