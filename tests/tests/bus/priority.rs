//! Priority on the memory bus without a concurrency limit: events waiting for a worker are
//! taken highest priority first, in publish order within a priority.

use super::*;
use eventflow::backend::MemoryBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_events_overtake_a_thousand_waiting_low_ones() {
    let order = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let (o, g) = (order.clone(), gate.clone());
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .without_registry()
        .backend(MemoryBackend::new().workers(1))
        .recorder(&rec)
        .handler(Handler::new("work", "prio.*", move |e, _ctx| {
            let (o, g) = (o.clone(), g.clone());
            async move {
                let label = e.payload_json()?["label"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                if label == "busy" {
                    // The one worker is busy until the test lets it go.
                    let _ = g.acquire().await.map(|p| p.forget());
                }
                o.push(label);
                Ok(())
            }
        }))
        .build()
        .await
        .unwrap();
    let publish = |label: String, priority: i32| {
        let bus = bus.clone();
        async move {
            let env =
                eventflow_tests::raw_envelope("prio.work", serde_json::json!({ "label": label }))
                    .with_priority(priority);
            bus.publish_envelope(env).await.unwrap();
        }
    };
    publish("busy".into(), 0).await;
    for i in 0..1_000 {
        publish(format!("low-{i}"), 0).await;
    }
    for i in 0..10 {
        publish(format!("high-{i}"), 10).await;
    }
    assert_eq!(bus.in_flight(), 1_011, "every event accepted and held");
    gate.add_permits(1);
    rec.wait_for_outcomes(1_011, Duration::from_secs(30)).await;
    let seen = order.entries();
    assert_eq!(seen.len(), 1_011);
    assert_eq!(seen[0], "busy");
    let high: Vec<String> = (0..10).map(|i| format!("high-{i}")).collect();
    assert_eq!(
        seen[1..11],
        high[..],
        "the 10 high ones first, in publish order"
    );
    let low: Vec<String> = (0..1_000).map(|i| format!("low-{i}")).collect();
    assert_eq!(seen[11..], low[..], "then the low ones, in publish order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_events_still_waiting_for_a_worker() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    let bus = EventBus::builder()
        .without_registry()
        .backend(MemoryBackend::new().workers(2))
        .handler(Handler::new("slowish", "prio.*", move |_e, _ctx| {
            let d = d.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }))
        .build()
        .await
        .unwrap();
    for i in 0..200 {
        let env = eventflow_tests::raw_envelope("prio.x", serde_json::json!(i));
        bus.publish_envelope(env).await.unwrap();
    }
    let report = bus.shutdown().await.unwrap();
    assert!(report.unfinished.is_empty());
    assert_eq!(done.load(Ordering::SeqCst), 200, "none lost in the queue");
}
