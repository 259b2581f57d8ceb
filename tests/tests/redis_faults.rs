//! Faults of the Redis backend found by trying to break it, each kept fixed by a test:
//! events no worker could read, dead letters that cannot be stored, workers with different
//! handlers. Each test runs on its own key prefix (or a Redis server of its own).
#![allow(clippy::unwrap_used)] // test code

use std::time::Duration;

use eventflow::redis::RedisBusExt;
use eventflow::{EventBus, EventError, PublishError};
use eventflow_tests::{raw_envelope, redis_or_skip};

/// A payload nested `n` arrays deep.
fn nested(n: usize) -> serde_json::Value {
    let mut v = serde_json::json!("bottom");
    for _ in 0..n {
        v = serde_json::json!([v]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_what_no_worker_could_read() {
    let Some(t) = redis_or_skip("too_deep").await else {
        return;
    };
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(t.config())
        .build()
        .await
        .unwrap();
    let err = bus
        .publish_envelope(raw_envelope("deep.one", nested(200)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventError::Publish(PublishError::TooDeep {
                depth: 201,
                max: 127,
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("a worker reads at most 127"),
        "{err}"
    );
    // Within the limit it goes out.
    bus.publish_envelope(raw_envelope("deep.one", nested(100)))
        .await
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(t.stream())
        .query_async(&mut t.conn().await)
        .await
        .unwrap();
    assert_eq!(len, 1, "only the readable event was stored");
    tokio::time::timeout(Duration::from_secs(10), bus.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// An entry over `max_entry_bytes` written into the stream by hand is dead-lettered without
/// being decoded (its dead letter keeps the start of each field), and the worker goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_over_max_entry_bytes_is_set_aside_unread() {
    let Some(t) = redis_or_skip("too_large").await else {
        return;
    };
    let mut cfg = t.config();
    cfg.max_entry_bytes = 64 * 1024;
    let seen = eventflow_tests::Log::default();
    let s = seen.clone();
    let rec = eventflow::testing::Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        cfg,
        &rec,
        eventflow::Handler::new("takes", "big.*", move |e, _ctx| {
            s.push(e.name.to_string());
            async { Ok::<(), eventflow::HandlerError>(()) }
        }),
    )
    .await;
    let huge = serde_json::to_string(&raw_envelope(
        "big.one",
        serde_json::json!({ "blob": "x".repeat(1 << 20) }),
    ))
    .unwrap();
    t.xadd(&[("envelope", huge)]).await;
    worker
        .publish_envelope(raw_envelope("big.small", serde_json::json!({})))
        .await
        .unwrap();
    eventflow_tests::wait_until("the small event", || {
        seen.entries() == ["big.small".to_owned()]
    })
    .await;
    let mut letters = Vec::new();
    for _ in 0..500 {
        letters = worker.dead_letters().await.unwrap();
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].error.contains("over max_entry_bytes (65536)"),
        "{}",
        letters[0].error
    );
    let kept = letters[0].envelope.payload.to_json().unwrap().to_string();
    assert!(
        kept.len() < 16 * 1024,
        "the dead letter kept {} bytes",
        kept.len()
    );
    assert!(kept.contains("bytes in all"), "{kept}");
    eventflow_tests::wait_acknowledged(&worker, "the large entry stayed pending").await;
    worker.shutdown().await.unwrap();
}
