//! Dispatch of one typed event to one Inline async handler with metrics and tracing on
//! (no metrics recorder; no tracing subscriber, then a subscriber that drops every span)
//! against the same bus with both off. Target: at most 1.5x with no subscriber.

mod support;
#[path = "support/welcome.rs"]
mod welcome;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_runtime::{EventBus, Handler};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use welcome::{UserCreated, send_welcome};

/// Enables every span and event, and keeps nothing.
struct DropAll;

impl Subscriber for DropAll {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let build = |on: bool| {
        rt.block_on(
            EventBus::builder()
                .without_registry()
                .metrics(on)
                .tracing(on)
                .handler(Handler::typed(
                    "send_welcome",
                    "user.created",
                    |e: UserCreated, _ctx| send_welcome(e),
                ))
                .build(),
        )
        .expect("bus")
    };
    let (off, on) = (build(false), build(true));
    let event = UserCreated {
        id: 1,
        email: "a@example.com".into(),
    };

    let mut g = c.benchmark_group("dispatch_telemetry");
    for (label, bus, subscriber) in [
        ("off", &off, false),
        ("on_no_subscriber", &on, false),
        ("on_dropping_subscriber", &on, true),
    ] {
        g.bench_function(label, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let event = event.clone();
                let bus = bus.clone();
                async move {
                    // The runtime is single-threaded, so the thread's default subscriber is
                    // the one every span of the dispatch sees.
                    let _guard = subscriber.then(|| tracing::subscriber::set_default(DropAll));
                    let start = Instant::now();
                    for _ in 0..iters {
                        let report = bus
                            .dispatch(std::hint::black_box(event.clone()))
                            .await
                            .expect("dispatch");
                        debug_assert!(report.is_success());
                    }
                    support::record(label, iters, start.elapsed())
                }
            })
        });
    }
    g.finish();
    support::report_ratio(
        "telemetry on, no subscriber vs off (target <= 1.5x)",
        "on_no_subscriber",
        "off",
    );
    support::report_ratio(
        "telemetry on, dropping subscriber vs off",
        "on_dropping_subscriber",
        "off",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
