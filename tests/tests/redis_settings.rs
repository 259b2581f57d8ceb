//! The Redis settings of the bus builder: every one has a method, they compose in the
//! order written, and `redis_config` never silently drops a setting made before it.
#![allow(clippy::unwrap_used)] // test code

use eventflow::redis::RedisBusExt;
use eventflow::{EventBus, EventError, PublishError};
use eventflow_tests::{raw_envelope, redis_or_skip};

async fn stream_len(t: &eventflow_tests::RedisTest, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(&mut t.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_config_refuses_to_drop_a_setting_made_before_it() {
    let Some(t) = redis_or_skip("settings_conflict").await else {
        return;
    };
    let err = EventBus::builder()
        .without_registry()
        .queue("some-other-queue")
        .redis_config(t.config())
        .build()
        .await
        .unwrap_err();
    let EventError::Validation(v) = &err else {
        panic!("{err}");
    };
    assert_eq!(v.problems.len(), 1, "{err}");
    assert_eq!(v.problems[0].name.as_deref(), Some("queue"), "{err}");
    assert!(
        err.to_string()
            .contains("`.queue(..)` was set before `.redis_config(..)`"),
        "{err}"
    );
    // The same value twice is no conflict.
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .queue(t.queue.clone())
        .redis_config(t.config())
        .build()
        .await
        .unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_after_redis_config_change_it() {
    let Some(t) = redis_or_skip("settings_after").await else {
        return;
    };
    let other = format!("{}-after", t.queue);
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(t.config())
        .queue(other.clone())
        .build()
        .await
        .unwrap();
    bus.publish_envelope(raw_envelope("settings.one", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(stream_len(&t, &format!("{other}:stream")).await, 1);
    assert_eq!(stream_len(&t, &t.stream()).await, 0);
    bus.shutdown().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{other}:stream"))
        .arg(format!("{other}:bell"))
        .query_async(&mut t.conn().await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_setting_has_a_builder_method() {
    let Some(t) = redis_or_skip("settings_methods").await else {
        return;
    };
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis(t.url.clone())
        .queue(t.queue.clone())
        .consumer_group("settings")
        .connections(2)
        .claim_idle(std::time::Duration::from_secs(60))
        .max_in_flight(8)
        .max_deliveries(2)
        .max_entry_bytes(512)
        .publish_timeout(std::time::Duration::from_secs(2))
        .max_stream_len(10)
        .build()
        .await
        .unwrap();
    let err = bus
        .publish_envelope(raw_envelope(
            "settings.big",
            serde_json::json!({ "blob": "x".repeat(1024) }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventError::Publish(PublishError::TooLarge { max: 512, .. })
        ),
        "{err}"
    );
    for _ in 0..1_000 {
        bus.publish_envelope(raw_envelope("settings.small", serde_json::json!({})))
            .await
            .unwrap();
    }
    // `MAXLEN ~ 10` trims whole nodes of the stream (100 entries each, by default).
    let len = stream_len(&t, &t.stream()).await;
    assert!(len < 300, "the stream kept {len} of 1,000 entries");
    bus.shutdown().await.unwrap();
}

/// A whole bus on Redis from a TOML file: the `[backend]` section is a `RedisConfig`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_config_with_a_redis_backend_section() {
    let Some(t) = redis_or_skip("settings_toml").await else {
        return;
    };
    let text = format!(
        "allow_unhandled = true\n[backend]\nurl = \"{}\"\nqueue = \"{}\"\nmax_entry_bytes = 1024\nclaim_idle = \"45s\"\n",
        t.url, t.queue
    );
    let cfg: eventflow::BusConfig<eventflow::redis::RedisConfig> =
        eventflow::config::from_toml(&text).unwrap();
    let backend = cfg.backend.as_ref().unwrap();
    assert_eq!(backend.claim_idle, std::time::Duration::from_secs(45));
    let bus = EventBus::builder()
        .without_registry()
        .config(cfg)
        .build()
        .await
        .unwrap();
    bus.publish_envelope(raw_envelope("settings.toml", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(stream_len(&t, &t.stream()).await, 1);
    let err = bus
        .publish_envelope(raw_envelope(
            "settings.toml",
            serde_json::json!({ "blob": "x".repeat(2048) }),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventError::Publish(PublishError::TooLarge { max: 1024, .. })
        ),
        "{err}"
    );
    bus.shutdown().await.unwrap();
}
