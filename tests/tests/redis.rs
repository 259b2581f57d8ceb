//! The Redis Streams backend against the real server (each test on its own key prefix).
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::testing::Recorder;
use eventflow::{
    EventBus, EventError, Handler, HandlerError, HandlerErrorKind, PublishError, RetryPolicy,
};
use eventflow_tests::{
    Log, RedisTest, raw_envelope as raw, redis_or_skip, start_redis_worker as start_worker,
    wait_acknowledged, wait_until,
};

fn config(t: &RedisTest) -> RedisConfig {
    t.config()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_are_handled_once_and_acknowledged() {
    let Some(t) = redis_or_skip("handled_once").await else {
        return;
    };
    let seen = Log::default();
    let s = seen.clone();
    let rec = Recorder::new();
    let worker = start_worker(
        config(&t),
        &rec,
        Handler::new("count", "job.*", move |env, _| {
            let s = s.clone();
            async move {
                s.push(env.payload_json()?["n"].to_string());
                Ok(())
            }
        }),
    )
    .await;
    // A publisher-only process: same queue, never started.
    let publisher = eventflow_tests::redis_publisher(config(&t)).await;
    for n in 0..50 {
        publisher
            .publish_envelope(raw("job.run", serde_json::json!({ "n": n })))
            .await
            .unwrap();
    }
    rec.wait_for_outcomes(50, Duration::from_secs(20)).await;
    let mut got: Vec<u32> = seen.entries().iter().map(|s| s.parse().unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..50).collect::<Vec<_>>(), "each event exactly once");
    wait_acknowledged(&worker, "entries left unacknowledged").await;
    let h = worker.health().await;
    assert!(h.reachable);
    assert_eq!(h.lag, Some(0));
    assert_eq!(h.dead_letters, Some(0));
    assert!(worker.shutdown().await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_rescheduled_through_redis_and_acknowledged() {
    let Some(t) = redis_or_skip("rescheduled").await else {
        return;
    };
    let attempts = Log::default();
    let a = attempts.clone();
    let rec = Recorder::new();
    let worker = start_worker(
        config(&t),
        &rec,
        Handler::new("flaky", "pay.charge", move |_env, ctx| {
            let a = a.clone();
            async move {
                a.push(ctx.attempt().to_string());
                if ctx.attempt() < 3 {
                    Err(HandlerError::msg("gateway busy"))
                } else {
                    Ok(())
                }
            }
        })
        .retry(RetryPolicy::attempts(3).backoff(0.05, 1.0)),
    )
    .await;
    worker
        .publish_envelope(raw("pay.charge", serde_json::json!({})))
        .await
        .unwrap();
    let outcomes = rec.wait_for_outcomes(1, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].succeeded());
    assert_eq!(outcomes[0].attempts, 3);
    assert_eq!(attempts.entries(), ["1", "2", "3"]);
    let mut conn = t.conn().await;
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(format!("{}:delayed", t.queue))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(delayed, 0);
    wait_acknowledged(&worker, "entries left unacknowledged").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_can_be_listed_retried_and_removed_from_another_bus() {
    let Some(t) = redis_or_skip("failed_jobs").await else {
        return;
    };
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    let rec = Recorder::new();
    let worker = start_worker(
        config(&t),
        &rec,
        Handler::new("mailer", "mail.send", move |_env, _ctx| {
            let f = f.clone();
            async move {
                if f.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err(HandlerError::msg("smtp down"))
                }
            }
        })
        .retry(RetryPolicy::attempts(2).backoff(0.01, 1.0)),
    )
    .await;
    worker
        .publish_envelope(raw("mail.send", serde_json::json!({"to": "a@b"})))
        .await
        .unwrap();
    rec.wait_for_outcomes(1, Duration::from_secs(20)).await;

    // An admin process with no handlers sees the failed job.
    let admin = eventflow_tests::redis_publisher(config(&t)).await;
    let dead = admin.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].handler.as_str(),
            dead[0].error.as_str(),
            dead[0].attempts
        ),
        ("mailer", "smtp down", 2)
    );
    assert_eq!(
        dead[0].envelope.payload_json().unwrap(),
        serde_json::json!({"to": "a@b"})
    );

    fixed.store(true, Ordering::SeqCst);
    let r = admin.retry_dead_letter(dead[0].id).await.unwrap();
    assert!(matches!(r, eventflow::Redelivery::Queued));
    let outcomes = rec.wait_for_outcomes(2, Duration::from_secs(20)).await;
    assert!(outcomes[1].succeeded(), "{outcomes:?}");
    assert!(admin.dead_letters().await.unwrap().is_empty());

    fixed.store(false, Ordering::SeqCst);
    worker
        .publish_envelope(raw("mail.send", serde_json::json!({"to": "c@d"})))
        .await
        .unwrap();
    rec.wait_for_outcomes(3, Duration::from_secs(20)).await;
    let id = admin.dead_letters().await.unwrap()[0].id;
    assert!(admin.remove_dead_letter(id).await.unwrap());
    assert!(!admin.remove_dead_letter(id).await.unwrap());
    assert_eq!(admin.health().await.dead_letters, Some(0));
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_wait_in_redis_until_due() {
    let Some(t) = redis_or_skip("delayed").await else {
        return;
    };
    let rec = Recorder::new();
    let arrived = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let a = arrived.clone();
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(config(&t))
        .recorder(&rec)
        .handler(Handler::new("later", "remind.me", move |_env, _ctx| {
            let a = a.clone();
            async move {
                *a.lock().unwrap() = Some(Instant::now());
                Ok(())
            }
        }))
        .build()
        .await
        .unwrap();
    let published = Instant::now();
    worker
        .publish_envelope_delayed(
            raw("remind.me", serde_json::json!({})),
            Duration::from_millis(700),
        )
        .await
        .unwrap();
    let mut conn = t.conn().await;
    let waiting: u64 = redis::cmd("ZCARD")
        .arg(format!("{}:delayed", t.queue))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting, 1, "the delayed event is kept in Redis");
    // Started after publishing: a worker that was down picks delayed events up from Redis.
    worker.start().await.unwrap();
    rec.wait_for_outcomes(1, Duration::from_secs(20)).await;
    let at = arrived.lock().unwrap().expect("delivered");
    assert!(
        at - published >= Duration::from_millis(700),
        "arrived after {:?}",
        at - published
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entries_go_to_dead_letters_and_the_worker_keeps_going() {
    let Some(t) = redis_or_skip("bad_input").await else {
        return;
    };
    #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
    }
    let typed_calls = Arc::new(AtomicU32::new(0));
    let c = typed_calls.clone();
    let rec = Recorder::new();
    let worker = start_worker(
        config(&t),
        &rec,
        Handler::typed("orders", "order.placed", move |_o: Order, _ctx| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }),
    )
    .await;
    let mut conn = t.conn().await;
    let xadd = |fields: Vec<(&'static str, String)>| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(t.stream()).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    let _: String = xadd(vec![("garbage", "1".into())])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = xadd(vec![("envelope", "not json".into())])
        .query_async(&mut conn)
        .await
        .unwrap();
    let wrong_shape =
        serde_json::to_string(&raw("order.placed", serde_json::json!({"id": "seven"}))).unwrap();
    let _: String = xadd(vec![("envelope", wrong_shape)])
        .query_async(&mut conn)
        .await
        .unwrap();
    let good = serde_json::to_string(&raw("order.placed", serde_json::json!({"id": 7}))).unwrap();
    let _: String = xadd(vec![("envelope", good)])
        .query_async(&mut conn)
        .await
        .unwrap();

    wait_until("the good event", || typed_calls.load(Ordering::SeqCst) == 1).await;
    let start = Instant::now();
    let dead = loop {
        let dead = worker.dead_letters().await.unwrap();
        if dead.len() == 3 || start.elapsed() > Duration::from_secs(10) {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 3, "{dead:#?}");
    let reasons: Vec<&str> = dead.iter().map(|d| d.error.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("no `envelope` field")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a valid envelope")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Order") && r.contains("order.placed")),
        "{reasons:?}"
    );
    assert!(
        dead.iter()
            .all(|d| d.error_kind == HandlerErrorKind::Payload)
    );
    wait_acknowledged(&worker, "invalid entries left unacknowledged").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_abandoned_by_a_dead_consumer_are_claimed_with_their_delivery_count() {
    let Some(t) = redis_or_skip("claimed").await else {
        return;
    };
    let mut cfg = config(&t);
    cfg.claim_idle = Duration::from_millis(200);
    let publisher = eventflow_tests::redis_publisher(cfg.clone()).await;
    for n in 0..5 {
        publisher
            .publish_envelope(raw("task.run", serde_json::json!({ "n": n })))
            .await
            .unwrap();
    }
    // A consumer reads them and dies without acknowledging.
    let mut conn = t.conn().await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(t.stream())
        .arg(&cfg.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&cfg.group)
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(t.stream())
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();

    let attempts = Log::default();
    let a = attempts.clone();
    let rec = Recorder::new();
    let worker = start_worker(
        cfg,
        &rec,
        Handler::new("runner", "task.run", move |_env, ctx| {
            let a = a.clone();
            async move {
                a.push(ctx.attempt().to_string());
                Ok(())
            }
        }),
    )
    .await;
    let outcomes = rec.wait_for_outcomes(5, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 5);
    assert_eq!(
        attempts.entries(),
        ["2", "2", "2", "2", "2"],
        "the second delivery of each"
    );
    wait_acknowledged(&worker, "claimed entries left unacknowledged").await;
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_events_are_refused_at_publish() {
    let Some(t) = redis_or_skip("oversized").await else {
        return;
    };
    let mut cfg = config(&t);
    // Room for a small event with its headers (the trace context among them).
    cfg.max_entry_bytes = 512;
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .unwrap();
    let big = "x".repeat(2000);
    let err = bus
        .publish_envelope(raw("blob.stored", serde_json::json!({ "data": big })))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventError::Publish(PublishError::TooLarge { max: 512, .. })
        ),
        "{err}"
    );
    bus.publish_envelope(raw("blob.stored", serde_json::json!({ "data": "small" })))
        .await
        .unwrap();
}
