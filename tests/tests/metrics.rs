//! Metrics through the `metrics` facade: counters per handler and event name, in-flight
//! gauge, duration and publish-to-handle histograms; nothing when turned off.
#![allow(clippy::unwrap_used)] // test code

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use eventflow::telemetry::names;
use eventflow::{EventBus, Handler, HandlerError, RetryPolicy};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Key = (String, Vec<(String, String)>);

/// One snapshot of everything recorded, keyed by name and sorted labels.
fn snapshot(s: &metrics_util::debugging::Snapshotter) -> HashMap<Key, DebugValue> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, v)| {
            let mut labels: Vec<(String, String)> = ck
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((ck.key().name().to_owned(), labels), v)
        })
        .collect()
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    (name.to_owned(), l)
}

// One test: the recorder is global and a snapshot resets what it reads.
#[tokio::test]
async fn the_bus_reports_through_the_metrics_facade() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let flaky_calls = Arc::new(AtomicU32::new(0));
    let f = flaky_calls.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("ok", "metric.*", |_env, _ctx| async {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            Ok::<(), HandlerError>(())
        }))
        .handler(
            Handler::new("flaky", "metric.*", move |_env, _ctx| {
                let f = f.clone();
                async move {
                    if f.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(HandlerError::msg("first call fails"))
                    } else {
                        Ok(())
                    }
                }
            })
            .retry(RetryPolicy::attempts(2).backoff(0.0, 0.0)),
        )
        .handler(Handler::new("broken", "metric.a", |_env, _ctx| async {
            Err::<(), _>(HandlerError::msg("always"))
        }))
        .handler(
            Handler::new("picky", "metric.*", |_env, _ctx| async { Ok(()) })
                .filter(|env| env.name == "metric.b"),
        )
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        bus.dispatch_raw("metric.a", serde_json::json!({}))
            .await
            .unwrap();
    }
    bus.dispatch_raw("metric.b", serde_json::json!({}))
        .await
        .unwrap();
    let quiet = EventBus::builder()
        .without_registry()
        .metrics(false)
        .handler(Handler::new("quiet", "metric.*", |_env, _ctx| async {
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    quiet
        .dispatch_raw("metric.a", serde_json::json!({}))
        .await
        .unwrap();

    let snap = snapshot(&snapshotter);
    let counter = |name: &str, labels: &[(&str, &str)]| match snap.get(&key(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{name} {labels:?} is {other:?}"),
    };
    let a = |h: &'static str| [("handler", h), ("event", "metric.a")];
    // The quiet bus's publish is not counted.
    assert_eq!(counter(names::PUBLISHED, &[("event", "metric.a")]), 3);
    assert_eq!(counter(names::PUBLISHED, &[("event", "metric.b")]), 1);
    assert_eq!(counter(names::DELIVERED, &a("ok")), 3);
    assert_eq!(counter(names::SUCCEEDED, &a("ok")), 3);
    assert_eq!(counter(names::FAILED_ATTEMPTS, &a("flaky")), 1);
    assert_eq!(counter(names::RETRIED, &a("flaky")), 1);
    assert_eq!(counter(names::SUCCEEDED, &a("flaky")), 3);
    assert_eq!(counter(names::DELIVERED, &a("broken")), 3);
    assert_eq!(counter(names::FAILED_ATTEMPTS, &a("broken")), 3);
    assert_eq!(counter(names::DEAD_LETTERED, &a("broken")), 3);
    assert_eq!(counter(names::SUCCEEDED, &a("broken")), 0);
    assert_eq!(counter(names::FILTERED, &a("picky")), 3);
    assert_eq!(counter(names::DELIVERED, &a("picky")), 0);
    assert_eq!(
        counter(
            names::DELIVERED,
            &[("handler", "picky"), ("event", "metric.b")]
        ),
        1
    );
    let histogram = |name: &str, labels: &[(&str, &str)]| match snap.get(&key(name, labels)) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect::<Vec<_>>(),
        other => panic!("{name} {labels:?} is {other:?}"),
    };
    let durations = histogram(names::HANDLER_DURATION, &a("ok"));
    assert_eq!(durations.len(), 3);
    assert!(durations.iter().all(|&d| d >= 0.002), "{durations:?}");
    // Two attempts of the flaky handler's first event, one for each of the others.
    assert_eq!(histogram(names::HANDLER_DURATION, &a("flaky")).len(), 4);
    let lag = histogram(names::PUBLISH_TO_HANDLE, &a("ok"));
    assert_eq!(lag.len(), 3);
    assert!(lag.iter().all(|&d| (0.0..5.0).contains(&d)), "{lag:?}");
    match snap.get(&key(names::IN_FLIGHT, &[])) {
        Some(DebugValue::Gauge(g)) => assert_eq!(g.into_inner(), 0.0),
        other => panic!("in flight is {other:?}"),
    }
    assert!(
        !snap
            .keys()
            .any(|(_, labels)| labels.iter().any(|(_, v)| v == "quiet")),
        "a bus with metrics off registered handles"
    );

    // The snapshot API agrees.
    let m = bus.metrics();
    let broken = m.handler("broken").unwrap();
    assert_eq!((broken.delivered, broken.dead_lettered), (3, 3));
    assert_eq!(m.handler("picky").unwrap().filtered, 3);
    assert_eq!(m.published, 4);
}
