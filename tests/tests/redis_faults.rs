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
