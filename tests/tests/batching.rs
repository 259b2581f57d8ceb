//! Batched handlers on the memory backend: batches by size or wait, payload errors before
//! batching, a failed batch retried whole and then dead-lettered event by event, filters.
#![allow(clippy::unwrap_used)] // test code

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventflow::prelude::*;
use eventflow::{BatchConfig, BatchContext, BatchError, OutcomeStatus};
use eventflow_tests::wait_until;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "metric.cpu")]
struct Cpu {
    host: String,
    load: f64,
}

static BATCHES: Mutex<Vec<Vec<String>>> = Mutex::new(Vec::new());

#[event_handler(
    "metric.*",
    name = "metrics.store",
    batch(max_size = 5, max_wait = "50ms")
)]
async fn store(events: Vec<Cpu>, ctx: &BatchContext) -> Result<(), HandlerError> {
    assert_eq!(events.len(), ctx.envelopes().len());
    BATCHES
        .lock()
        .unwrap()
        .push(events.into_iter().map(|e| e.host).collect());
    Ok(())
}

fn cpu(host: &str) -> Cpu {
    Cpu {
        host: host.into(),
        load: 0.5,
    }
}

#[tokio::test]
async fn events_are_grouped_by_size_then_by_wait_and_bad_payloads_never_join() {
    let bus = EventBus::builder()
        .only(["metrics.store"])
        .build()
        .await
        .unwrap();
    for i in 0..12 {
        bus.publish(cpu(&format!("h{i}"))).await.unwrap();
    }
    // Not a `Cpu`: dead-lettered at once, without failing the batch it would have joined.
    bus.publish_raw("metric.cpu", serde_json::json!({ "host": 7 }))
        .await
        .unwrap();
    wait_until("every event handled", || {
        BATCHES.lock().unwrap().iter().map(Vec::len).sum::<usize>() == 12
    })
    .await;
    let batches = BATCHES.lock().unwrap().clone();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    // Two full batches at once; the rest waits for `max_wait`.
    assert_eq!(sizes, vec![5, 5, 2], "{batches:?}");
    let mut hosts: Vec<String> = batches.concat();
    hosts.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("h{i}")).collect();
    expected.sort();
    assert_eq!(hosts, expected);

    wait_until("the bad payload dead-lettered", || {
        bus.metrics().handlers[0].dead_lettered == 1
    })
    .await;
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].error_kind, eventflow::HandlerErrorKind::Payload);
    let m = &bus.metrics().handlers[0];
    assert_eq!((m.delivered, m.succeeded, m.dead_lettered), (13, 12, 1));
    bus.shutdown().await.unwrap();
}

fn config(max_size: usize, wait_ms: u64) -> BatchConfig {
    BatchConfig {
        max_size,
        max_wait: Duration::from_millis(wait_ms),
    }
}

#[tokio::test]
async fn a_failed_batch_is_retried_whole_then_each_event_is_dead_lettered() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::batch_of(
                "flaky",
                "job.*",
                config(3, 20),
                move |jobs: Vec<u32>, ctx| {
                    let r = r.clone();
                    async move {
                        let run = r.fetch_add(1, Ordering::SeqCst) + 1;
                        if jobs.len() == 3 {
                            assert_eq!(ctx.attempt(), run, "the batch's attempts count up");
                        }
                        if jobs.contains(&13) {
                            return Err(HandlerError::msg("unlucky batch"));
                        }
                        Ok(())
                    }
                },
            )
            .retry(RetryPolicy::attempts(3).backoff(0.0, 0.0)),
        )
        .build()
        .await
        .unwrap();
    let mut reports = Vec::new();
    let dispatches: Vec<_> = [11u32, 12, 13]
        .into_iter()
        .map(|n| {
            let bus = bus.clone();
            tokio::spawn(async move { bus.dispatch_raw("job.run", serde_json::json!(n)).await })
        })
        .collect();
    for d in dispatches {
        reports.push(d.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "one batch, three attempts");
    for report in &reports {
        let outcome = &report.outcomes[0];
        assert_eq!(outcome.attempts, 3);
        let OutcomeStatus::DeadLettered { error, .. } = &outcome.status else {
            panic!("{outcome:?}");
        };
        assert!(error.is::<BatchError>(), "{error}");
        assert!(error.to_string().contains("unlucky batch"), "{error}");
    }
    let dead = bus.dead_letters().await.unwrap();
    let mut ids: Vec<u64> = dead
        .iter()
        .map(|d| d.envelope.payload_json().unwrap().as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![11, 12, 13],
        "each event of the batch is its own dead letter"
    );
    let m = &bus.metrics().handlers[0];
    assert_eq!(
        (m.delivered, m.failed_attempts, m.retried, m.dead_lettered),
        (3, 3, 2, 3)
    );

    // Retrying one dead letter delivers that event alone, in a batch of one.
    let twelve = dead
        .iter()
        .find(|d| d.envelope.payload_json().unwrap() == serde_json::json!(12))
        .unwrap();
    let redelivery = bus.retry_dead_letter(twelve.id).await.unwrap();
    assert!(redelivery.outcome().unwrap().succeeded(), "{redelivery:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_batch_that_fails_once_succeeds_for_every_event() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::batch("once", "job.*", config(2, 1000), move |batch| {
                let first = r.fetch_add(1, Ordering::SeqCst) == 0;
                let size = batch.envelopes().len();
                async move {
                    assert_eq!(size, 2);
                    if first {
                        Err(HandlerError::msg("database busy"))
                    } else {
                        Ok(())
                    }
                }
            })
            .retry(RetryPolicy::attempts(2).backoff(0.0, 0.0)),
        )
        .build()
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        bus.dispatch_raw("job.a", serde_json::json!({})),
        bus.dispatch_raw("job.b", serde_json::json!({}))
    );
    for report in [a.unwrap(), b.unwrap()] {
        assert!(report.is_success(), "{report:?}");
        assert_eq!(report.outcomes[0].attempts, 2);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(bus.dead_letters().await.unwrap().is_empty());
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn filtered_events_do_not_join_batches() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::batch_of("evens", "n.*", config(3, 30), move |ns: Vec<u32>, _ctx| {
                s.lock().unwrap().push(ns);
                async { Ok::<(), HandlerError>(()) }
            })
            .filter(|env| {
                env.payload_json()
                    .ok()
                    .and_then(|v| v.as_u64())
                    .is_some_and(|n| n % 2 == 0)
            }),
        )
        .build()
        .await
        .unwrap();
    for n in 0..6u32 {
        bus.publish_raw("n.value", serde_json::json!(n))
            .await
            .unwrap();
    }
    wait_until("three evens", || {
        seen.lock().unwrap().iter().map(Vec::len).sum::<usize>() == 3
    })
    .await;
    let mut all: Vec<u32> = seen.lock().unwrap().concat();
    all.sort_unstable();
    assert_eq!(all, vec![0, 2, 4]);
    let m = &bus.metrics().handlers[0];
    assert_eq!((m.filtered, m.delivered, m.succeeded), (3, 3, 3));
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_batch_settings_are_rejected_at_build() {
    let err = EventBus::builder()
        .without_registry()
        .handler(Handler::batch("zero", "x.*", config(0, 10), |_b| async {
            Ok::<(), HandlerError>(())
        }))
        .build()
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("max_size must be at least 1"),
        "{err}"
    );
}
