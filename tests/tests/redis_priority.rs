//! Priority lanes on Redis: a busy worker takes waiting events highest priority first,
//! FIFO within a priority, with the same claim guarantees on every lane.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::time::Duration;

use eventflow::testing::Recorder;
use eventflow::{Handler, HandlerError, PublishOptions};
use eventflow_tests::{
    Log, raw_envelope as raw, redis_or_skip, redis_publisher, start_redis_worker, wait_until,
};
use tokio::sync::Semaphore;

fn labelled(order: Log, gate: Arc<Semaphore>) -> Handler {
    Handler::new("work", "prio.*", move |e, _ctx| {
        let (order, gate) = (order.clone(), gate.clone());
        async move {
            let label = e.payload_json()?["label"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            if label == "busy" {
                let _ = gate.acquire().await.map(|p| p.forget());
            }
            order.push(label);
            Ok::<(), HandlerError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_events_overtake_a_thousand_waiting_low_ones_on_redis() {
    let Some(t) = redis_or_skip("priority_lanes").await else {
        return;
    };
    let mut cfg = t.config();
    // One entry read and one handled at a time: what waits, waits in Redis.
    cfg.batch = 1;
    cfg.max_in_flight = 1;
    let order = Log::default();
    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder::new();
    let worker = start_redis_worker(cfg.clone(), &rec, labelled(order.clone(), gate.clone())).await;
    let publisher = redis_publisher(cfg).await;
    let publish = |label: String, priority: i32| {
        let publisher = publisher.clone();
        async move {
            publisher
                .publish_envelope_with(
                    raw("prio.work", serde_json::json!({ "label": label })),
                    PublishOptions::new().priority(priority),
                )
                .await
                .unwrap();
        }
    };
    publish("busy".into(), 0).await;
    wait_until("the busy event running", || worker.in_flight() >= 1).await;
    for i in 0..1_000 {
        publish(format!("low-{i}"), 0).await;
    }
    for i in 0..10 {
        publish(format!("high-{i}"), 10).await;
    }
    gate.add_permits(1);
    rec.wait_for_outcomes(1_011, Duration::from_secs(60)).await;
    let seen = order.entries();
    assert_eq!(seen.len(), 1_011);
    let at = |label: &str| seen.iter().position(|s| s == label).unwrap();
    // The worker may have read one low event while it waited for its one slot; every
    // other low one waited in Redis behind the high lane.
    let highs: Vec<usize> = (0..10).map(|i| at(&format!("high-{i}"))).collect();
    assert!(
        highs.windows(2).all(|w| w[0] < w[1]),
        "FIFO within a priority: {highs:?}"
    );
    assert!(
        highs[9] < at("low-2"),
        "the 10 high ones before the waiting low ones: {:?}",
        &seen[..15]
    );
    let lows: Vec<usize> = (0..1_000).map(|i| at(&format!("low-{i}"))).collect();
    assert!(
        lows.windows(2).all(|w| w[0] < w[1]),
        "the low ones in publish order"
    );
    let keys: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{}:lanes", t.queue))
        .arg(0)
        .arg(-1)
        .query_async(&mut t.conn().await)
        .await
        .unwrap();
    assert_eq!(keys, [format!("{}:stream:p10", t.queue)]);
    eventflow_tests::wait_acknowledged(&worker, "every lane acknowledged").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_a_lane_left_by_a_dead_consumer_is_claimed_and_delayed_ones_keep_their_lane() {
    let Some(t) = redis_or_skip("priority_claim").await else {
        return;
    };
    let mut cfg = t.config();
    cfg.claim_idle = Duration::from_millis(300);
    let publisher = redis_publisher(cfg.clone()).await;
    publisher
        .publish_envelope_with(
            raw("prio.work", serde_json::json!({ "label": "orphan" })),
            PublishOptions::new().priority(5),
        )
        .await
        .unwrap();
    // A consumer reads the lane's entry and dies without acknowledging it.
    let lane = format!("{}:stream:p5", t.queue);
    let mut c = t.conn().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&lane)
        .arg(&cfg.group)
        .arg("0")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&cfg.group)
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&lane)
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    let order = Log::default();
    let rec = Recorder::new();
    let worker = start_redis_worker(
        cfg.clone(),
        &rec,
        labelled(order.clone(), Arc::new(Semaphore::new(0))),
    )
    .await;
    publisher
        .publish_envelope_with(
            raw("prio.work", serde_json::json!({ "label": "later" })),
            PublishOptions::new()
                .priority(5)
                .delay(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    rec.wait_for_outcomes(2, Duration::from_secs(20)).await;
    let mut seen = order.entries();
    seen.sort();
    assert_eq!(seen, ["later", "orphan"]);
    eventflow_tests::wait_acknowledged(&worker, "the claimed entry acknowledged").await;
    // The delayed one went to its lane, not the default stream.
    let default_len: u64 = redis::cmd("XLEN")
        .arg(t.stream())
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(default_len, 0, "nothing in the default stream");
    let lane_len: u64 = redis::cmd("XLEN")
        .arg(&lane)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(lane_len, 2);
    worker.shutdown().await.unwrap();
}
