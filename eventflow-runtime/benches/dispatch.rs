//! (a) `dispatch` of one typed event to one Inline async handler, against a direct call of
//! the same function through a boxed future. Target: at most 3x. (b) The same with metrics
//! on (the default: counters, percentiles of the last samples, the rate) against metrics
//! off, in the same run.

mod support;
#[path = "support/welcome.rs"]
mod welcome;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_runtime::{EventBus, Handler, HandlerError};
use welcome::{UserCreated, send_welcome};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let make = |metrics: bool| {
        rt.block_on(
            EventBus::builder()
                .without_registry()
                .metrics(metrics)
                .handler(Handler::typed(
                    "send_welcome",
                    "user.created",
                    |e: UserCreated, _ctx| send_welcome(e),
                ))
                .build(),
        )
        .expect("bus")
    };
    let bus = make(true);
    let quiet = make(false);
    let event = UserCreated {
        id: 1,
        email: "a@example.com".into(),
    };

    let mut g = c.benchmark_group("dispatch_one_inline_handler");
    g.bench_function("direct_boxed_call", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let event = event.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let fut: Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>> =
                        Box::pin(send_welcome(std::hint::black_box(event.clone())));
                    fut.await.expect("handler");
                }
                support::record("direct", iters, start.elapsed())
            }
        })
    });
    let mut dispatching = |id: &str, label: &'static str, bus: &EventBus| {
        g.bench_function(id, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let event = event.clone();
                let bus = bus.clone();
                async move {
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
    };
    dispatching("bus_dispatch", "dispatch", &bus);
    dispatching("bus_dispatch_metrics_off", "dispatch_metrics_off", &quiet);
    g.finish();
    support::report_ratio(
        "dispatch with metrics on vs off",
        "dispatch",
        "dispatch_metrics_off",
    );
    support::report_ratio(
        "dispatch vs direct boxed call (target <= 3x)",
        "dispatch",
        "direct",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
