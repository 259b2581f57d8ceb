//! Dispatch of one typed event to one Inline async handler with metrics and tracing on
//! (no metrics recorder; no tracing subscriber, then a subscriber that drops every span,
//! then one that records every span's fields) against the same bus with both off.
//! Target: at most 1.05x with nothing installed.

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

/// Records each span's name and fields as text, as a log or trace exporter would (the
/// text is kept for the last spans only, so that memory stays bounded).
#[derive(Default)]
struct RecordAll {
    spans: std::sync::Mutex<Vec<String>>,
    next: std::sync::atomic::AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for RecordAll {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut text = String::from(attrs.metadata().name());
        attrs.record(&mut Fields(&mut text));
        let mut spans = self.spans.lock().expect("spans");
        if spans.len() >= 1_024 {
            spans.clear();
        }
        spans.push(text);
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Id::from_u64(n.saturating_add(1))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[derive(Clone, Copy, PartialEq)]
enum Listener {
    Nothing,
    Dropping,
    Recording,
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
    for (label, bus, listener) in [
        ("off", &off, Listener::Nothing),
        ("on_no_subscriber", &on, Listener::Nothing),
        ("on_dropping_subscriber", &on, Listener::Dropping),
        ("on_recording_subscriber", &on, Listener::Recording),
    ] {
        g.bench_function(label, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let event = event.clone();
                let bus = bus.clone();
                async move {
                    // The runtime is single-threaded, so the thread's default subscriber is
                    // the one every span of the dispatch sees.
                    let _guard = match listener {
                        Listener::Nothing => None,
                        Listener::Dropping => Some(tracing::subscriber::set_default(DropAll)),
                        Listener::Recording => {
                            Some(tracing::subscriber::set_default(RecordAll::default()))
                        }
                    };
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
        "telemetry on, no subscriber vs off (target <= 1.05x)",
        "on_no_subscriber",
        "off",
    );
    support::report_ratio(
        "telemetry on, dropping subscriber vs off",
        "on_dropping_subscriber",
        "off",
    );
    support::report_ratio(
        "telemetry on, recording subscriber vs off",
        "on_recording_subscriber",
        "off",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
