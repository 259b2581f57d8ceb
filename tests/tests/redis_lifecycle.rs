//! The Redis Streams backend's connections, shutdown and leases against the real server
//! (each test on its own key prefix): an unreachable server, connections killed under
//! load, unfinished entries at shutdown, a long handler's lease.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::testing::Recorder;
use eventflow::{EventBus, EventError, Handler, PublishError};
use eventflow_tests::{
    RedisTest, raw_envelope as raw, redis_or_skip, wait_acknowledged, wait_until,
};

fn config(t: &RedisTest) -> RedisConfig {
    t.config()
}

async fn pending(bus: &EventBus) -> Option<u64> {
    bus.health().await.pending
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

/// A handler subscribed on a running Redis worker takes the entries read from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_routes_to_a_handler_subscribed_while_it_runs() {
    let Some(t) = eventflow_tests::redis_or_skip("subscribe_live").await else {
        return;
    };
    let rec = eventflow::testing::Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        t.config(),
        &rec,
        eventflow::Handler::new("first", "sub.a", |_e, _ctx| async {
            Ok::<(), eventflow::HandlerError>(())
        }),
    )
    .await;
    let seen = eventflow_tests::Log::default();
    let s = seen.clone();
    let sub = worker
        .subscribe(eventflow::Handler::new(
            "second",
            "sub.b",
            move |e, _ctx| {
                s.push(e.name.to_string());
                async { Ok::<(), eventflow::HandlerError>(()) }
            },
        ))
        .unwrap();
    worker
        .publish_envelope(eventflow_tests::raw_envelope(
            "sub.b",
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    eventflow_tests::wait_until("the subscribed handler takes the entry", || {
        seen.entries() == ["sub.b".to_owned()]
    })
    .await;
    eventflow_tests::wait_acknowledged(&worker, "the entry stayed pending").await;
    assert!(sub.unsubscribe().await);
    worker.shutdown().await.unwrap();
}

/// Publish options travel in the entry: a worker gives up after the event's own
/// `max_attempts`, not the handler's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_honours_the_publish_options_in_the_entry() {
    let Some(t) = eventflow_tests::redis_or_skip("publish_opts").await else {
        return;
    };
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let rec = Recorder::new();
    let worker = eventflow_tests::start_redis_worker(
        t.config(),
        &rec,
        Handler::new("flaky", "opts.*", move |_e, _ctx| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(eventflow::HandlerError::msg("down")) }
        })
        .retry(eventflow::RetryPolicy::attempts(6).backoff(0.01, 0.01)),
    )
    .await;
    worker
        .publish_envelope_with(
            eventflow_tests::raw_envelope("opts.one", serde_json::json!({})),
            eventflow::PublishOptions::new().max_attempts(2),
        )
        .await
        .unwrap();
    let letters = eventflow_tests::dead_letters_once_any(&worker).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.shutdown().await.unwrap();
}
