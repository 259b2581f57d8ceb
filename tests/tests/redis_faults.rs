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
    let letters = eventflow_tests::dead_letters_once_any(&worker).await;
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

/// A Redis server of the test's own with 16 MB of memory (`noeviction`), and settings for
/// its queue `oom` that poll and claim fast.
async fn small_server(
    test: &str,
) -> Option<(eventflow_tests::OwnRedis, eventflow::redis::RedisConfig)> {
    let server = eventflow_tests::OwnRedis::start(
        test,
        &["--maxmemory", "16mb", "--maxmemory-policy", "noeviction"],
    )
    .await?;
    let mut cfg = eventflow::redis::RedisConfig::new(server.url(None));
    cfg.queue = "oom".into();
    cfg.block = Duration::from_millis(100);
    cfg.claim_idle = Duration::from_millis(500);
    Some((server, cfg))
}

/// A dead letter that cannot be stored (Redis at `maxmemory` refuses `HSET` while it still
/// accepts `XACK`) leaves the entry pending and is not counted as dead-lettered; once the
/// server takes writes again, the entry is claimed, and its dead letter stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_stored_leaves_the_entry_pending() {
    let Some((server, cfg)) = small_server("dead_letter_oom").await else {
        return;
    };
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let g = go.clone();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let rec = eventflow::testing::Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        cfg,
        &rec,
        eventflow::Handler::new("refuses", "doomed.*", move |_e, _ctx| {
            let (g, c) = (g.clone(), c.clone());
            async move {
                // The first attempt waits until the server is full.
                if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    g.notified().await;
                }
                Err::<(), _>(eventflow::HandlerError::permanent_msg("refused"))
            }
        }),
    )
    .await;
    worker
        .publish_envelope(raw_envelope("doomed.one", serde_json::json!({})))
        .await
        .unwrap();
    eventflow_tests::wait_until("the first attempt", || {
        calls.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let fillers = server.fill_until_refused().await;
    go.notify_one();
    // Refused: nothing stored, nothing acknowledged, nothing counted as dead-lettered.
    let mut failures = 0;
    for _ in 0..500 {
        failures = worker
            .metrics()
            .handler("refuses")
            .map_or(0, |m| m.dead_letter_failures);
        if failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failures >= 1,
        "the failed store was not counted: {:?}",
        worker.metrics()
    );
    let m = worker.metrics().handler("refuses").unwrap().clone();
    assert_eq!(m.dead_lettered, 0, "{m:?}");
    assert!(worker.dead_letters().await.unwrap().is_empty());
    assert_eq!(
        worker.health().await.pending,
        Some(1),
        "the entry was acknowledged"
    );

    // The server takes writes again: the entry is claimed and dead-lettered, once.
    fillers.free().await;
    let letters = eventflow_tests::dead_letters_once_any(&worker).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].handler, "refuses");
    eventflow_tests::wait_acknowledged(&worker, "the dead-lettered entry stayed pending").await;
    assert_eq!(
        worker.metrics().handler("refuses").unwrap().dead_lettered,
        1
    );
    worker.shutdown().await.unwrap();
}

/// An invalid entry whose dead letter cannot be stored (the server at `maxmemory`) stays
/// pending, and is dead-lettered once the server takes writes again. The worker starts on
/// the full server (which refuses `XGROUP CREATE` even for a group that exists).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_entry_whose_dead_letter_cannot_be_stored_stays_pending() {
    let Some((server, cfg)) = small_server("invalid_oom").await else {
        return;
    };
    let client = redis::Client::open(server.url(None)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("oom:stream")
        .arg(&cfg.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("oom:stream")
        .arg("*")
        .arg("envelope")
        .arg("not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fillers = server.fill_until_refused().await;
    let rec = eventflow::testing::Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        cfg,
        &rec,
        eventflow::Handler::new("any", "any.*", |_e, _ctx| async {
            Ok::<(), eventflow::HandlerError>(())
        }),
    )
    .await;
    // Read (delivered at least once) but neither stored nor acknowledged.
    let delivered = || async {
        let v: redis::Value = redis::cmd("XPENDING")
            .arg("oom:stream")
            .arg("workers")
            .arg("-")
            .arg("+")
            .arg(10)
            .query_async(&mut client.get_multiplexed_async_connection().await.unwrap())
            .await
            .unwrap();
        match v {
            redis::Value::Array(rows) => rows.len(),
            _ => 0,
        }
    };
    let mut seen = 0;
    for _ in 0..500 {
        seen = delivered().await;
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1, "the worker never read the entry");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(worker.dead_letters().await.unwrap().is_empty());
    assert_eq!(
        delivered().await,
        1,
        "the entry was acknowledged without its dead letter"
    );

    fillers.free().await;
    let letters = eventflow_tests::dead_letters_once_any(&worker).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].handler, "");
    eventflow_tests::wait_acknowledged(&worker, "the invalid entry stayed pending").await;
    worker.shutdown().await.unwrap();
}

/// Two workers of one group with different handlers: each event reaches the worker that
/// has its handler (the other leaves it pending instead of acknowledging it), and an event
/// neither handles is dead-lettered after `max_deliveries`, saying why; nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_with_different_handlers_leave_each_other_their_events() {
    let Some(t) = redis_or_skip("different_handlers").await else {
        return;
    };
    let mut cfg = t.config();
    cfg.claim_idle = Duration::from_millis(300);
    cfg.max_deliveries = 4;
    let counting = |name: &'static str, pattern: &'static str, log: &eventflow_tests::Log| {
        let log = log.clone();
        eventflow::Handler::new(name, pattern, move |e, _ctx| {
            log.push(format!("{} {}", e.name, e.payload.to_json().unwrap()["n"]));
            async { Ok::<(), eventflow::HandlerError>(()) }
        })
    };
    let (alpha_log, beta_log) = (
        eventflow_tests::Log::default(),
        eventflow_tests::Log::default(),
    );
    let rec = eventflow::testing::Recorder::new();
    let a = eventflow_tests::start_redis_worker(
        cfg.clone(),
        &rec,
        counting("alpha_h", "alpha.*", &alpha_log),
    )
    .await;
    let b = eventflow_tests::start_redis_worker(
        cfg.clone(),
        &rec,
        counting("beta_h", "beta.*", &beta_log),
    )
    .await;
    let publisher = eventflow_tests::redis_publisher(cfg).await;
    for n in 0..20 {
        for name in ["alpha.x", "beta.x"] {
            publisher
                .publish_envelope(raw_envelope(name, serde_json::json!({ "n": n })))
                .await
                .unwrap();
        }
    }
    publisher
        .publish_envelope(raw_envelope("gamma.x", serde_json::json!({ "n": 0 })))
        .await
        .unwrap();
    let distinct = |log: &eventflow_tests::Log| {
        let mut v = log.entries();
        v.sort();
        v.dedup();
        v.len()
    };
    eventflow_tests::wait_until("every event at its handler", || {
        distinct(&alpha_log) == 20 && distinct(&beta_log) == 20
    })
    .await;
    assert!(alpha_log.entries().iter().all(|e| e.starts_with("alpha.x")));
    assert!(beta_log.entries().iter().all(|e| e.starts_with("beta.x")));
    let letters = eventflow_tests::dead_letters_once_any(&a).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].envelope.name, "gamma.x");
    assert!(
        letters[0]
            .error
            .contains("no handler of the workers that read it matches `gamma.x`"),
        "{}",
        letters[0].error
    );
    eventflow_tests::wait_acknowledged(&a, "entries left pending").await;
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A process that only publishes has no handlers of its own, so it cannot know whether
/// some worker has one: publish accepts the event without `allow_unhandled`, and a worker
/// that has the handler takes it. `dispatch`, which runs this bus's own handlers, still
/// refuses an event none of them matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_only_publishes_needs_no_handlers() {
    let Some(t) = redis_or_skip("publisher_only").await else {
        return;
    };
    let publisher = EventBus::builder()
        .without_registry()
        .redis_config(t.config())
        .build()
        .await
        .unwrap();
    publisher
        .publish_envelope(raw_envelope(
            "billing.invoice",
            serde_json::json!({ "n": 1 }),
        ))
        .await
        .unwrap();
    let err = publisher
        .dispatch_envelope(raw_envelope("billing.invoice", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, EventError::NoHandler(_)), "{err}");
    let seen = eventflow_tests::Log::default();
    let s = seen.clone();
    let rec = eventflow::testing::Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        t.config(),
        &rec,
        eventflow::Handler::new("invoices", "billing.*", move |e, _ctx| {
            s.push(e.name.to_string());
            async { Ok::<(), eventflow::HandlerError>(()) }
        }),
    )
    .await;
    eventflow_tests::wait_until("the worker handles the event", || {
        seen.entries() == ["billing.invoice".to_owned()]
    })
    .await;
    worker.shutdown().await.unwrap();
    publisher.shutdown().await.unwrap();
}
