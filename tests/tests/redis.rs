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

async fn pending(bus: &EventBus) -> Option<u64> {
    bus.health().await.pending
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

#[tokio::test]
async fn an_unreachable_redis_is_a_connection_error_at_build() {
    let mut cfg = RedisConfig::new("redis://127.0.0.1:1/0");
    cfg.publish_timeout = Duration::from_millis(300);
    let err = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .build()
        .await
        .expect_err("must fail");
    assert!(matches!(err, EventError::Connection(_)), "{err}");
}

/// Deletes the ACL user when the test ends, panics included.
struct AclUser {
    url: String,
    name: String,
}

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(self.url.as_str())
            && let Ok(mut conn) = client.get_connection()
        {
            let _: Result<i64, _> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query(&mut conn);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_lose_nothing_and_acknowledge_nothing_unhandled() {
    let Some(t) = redis_or_skip("client_kill").await else {
        return;
    };
    // A user of its own, so that CLIENT KILL USER cuts this test's connections only
    // (and the password travels in the URL).
    let user = AclUser {
        url: t.url.clone(),
        name: format!("ef-fault-{}", &t.queue[t.queue.len() - 8..]),
    };
    let mut admin = t.conn().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.name)
        .arg("on")
        .arg(">s3cret")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = t
        .url
        .replacen("redis://", &format!("redis://{}:s3cret@", user.name), 1);
    let mut cfg = config(&t);
    cfg.url = url;
    cfg.publish_timeout = Duration::from_secs(2);

    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let s = seen.clone();
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(cfg.clone())
        .handler(Handler::new("record", "fault.test", move |env, _| {
            let s = s.clone();
            async move {
                let n = env.payload_json()?["n"].as_u64().unwrap_or(u64::MAX);
                s.lock().unwrap().insert(n);
                Ok(())
            }
        }))
        .build()
        .await
        .unwrap();
    worker.start().await.unwrap();
    let publisher = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .unwrap();

    let killer = {
        let name = user.name.clone();
        let mut admin = t.conn().await;
        tokio::spawn(async move {
            let mut killed = 0i64;
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(120)).await;
                killed += redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("USER")
                    .arg(&name)
                    .query_async::<i64>(&mut admin)
                    .await
                    .unwrap();
            }
            killed
        })
    };
    let mut publish_errors = 0;
    for n in 0..1_000u64 {
        loop {
            let env = raw("fault.test", serde_json::json!({ "n": n }));
            match publisher.publish_envelope(env).await {
                Ok(()) => break,
                Err(EventError::Publish(PublishError::Backend { .. })) => {
                    publish_errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        if n % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    let killed = killer.await.unwrap();
    assert!(
        killed > 0,
        "CLIENT KILL cut no connection; nothing was tested"
    );
    wait_until("every event handled", || {
        seen.lock().unwrap().len() == 1_000
    })
    .await;
    wait_acknowledged(
        &worker,
        "entries left pending after the connections came back",
    )
    .await;
    // Every acknowledged entry ran: all 1,000 were handled and nothing is pending.
    assert_eq!(seen.lock().unwrap().len(), 1_000);
    eprintln!(
        "client kill test: {killed} connection(s) killed, {publish_errors} publish error(s) retried"
    );
    worker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_unfinished_entries_pending_for_another_worker() {
    let Some(t) = redis_or_skip("shutdown_pending").await else {
        return;
    };
    let mut cfg = config(&t);
    cfg.claim_idle = Duration::from_millis(300);
    let slow = EventBus::builder()
        .without_registry()
        .redis_config(cfg.clone())
        .shutdown_timeout(Duration::from_millis(200))
        .handler(Handler::new("work", "long.job", |_env, _ctx| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    slow.start().await.unwrap();
    slow.publish_envelope(raw("long.job", serde_json::json!({})))
        .await
        .unwrap();
    wait_until("the slow worker took the job", || slow.in_flight() == 1).await;
    let report = slow.shutdown().await.unwrap();
    assert_eq!(report.unfinished.len(), 1);
    assert_eq!(
        pending(&slow).await,
        Some(1),
        "the unfinished entry was not acknowledged"
    );

    let rec = Recorder::new();
    let other = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .recorder(&rec)
        .handler(Handler::new("work", "long.job", |_env, _ctx| async {
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    other.start().await.unwrap();
    let outcomes = rec.wait_for_outcomes(1, Duration::from_secs(20)).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].attempts, 2, "claimed: its second delivery");
    wait_acknowledged(&other, "the claimed entry was not acknowledged").await;
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_entry_is_not_claimed_by_another_worker() {
    let Some(t) = redis_or_skip("lease").await else {
        return;
    };
    let mut cfg = config(&t);
    cfg.claim_idle = Duration::from_millis(300);
    let runs = Arc::new(AtomicU32::new(0));
    let rec = Recorder::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let r = runs.clone();
        let bus = EventBus::builder()
            .without_registry()
            .redis_config(cfg.clone())
            .recorder(&rec)
            .handler(Handler::new("slow", "slow.report", move |_env, _ctx| {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    // Five times the claim idle time.
                    tokio::time::sleep(Duration::from_millis(1_500)).await;
                    Ok(())
                }
            }))
            .build()
            .await
            .unwrap();
        bus.start().await.unwrap();
        workers.push(bus);
    }
    workers[0]
        .publish_envelope(raw("slow.report", serde_json::json!({})))
        .await
        .unwrap();
    rec.wait_for_outcomes(1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the running entry was claimed and run again"
    );
    wait_acknowledged(&workers[0], "the long entry was not acknowledged").await;
    for w in workers {
        w.shutdown().await.unwrap();
    }
}
