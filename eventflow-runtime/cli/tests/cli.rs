//! The built `eventflow` binary against Redis (a queue of its own per test, deleted
//! after): its output, its JSON and its exit codes.
#![allow(clippy::unwrap_used)] // test code

use std::process::Command;
use std::time::Duration;

use eventflow_redis::{RedisBusExt, RedisConfig};
use eventflow_runtime::{Envelope, EventBus, Handler, HandlerError, Payload};
use serde_json::{Value, json};

fn url() -> String {
    std::env::var("EVENTFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

struct Queue(String);

impl Drop for Queue {
    fn drop(&mut self) {
        if let Ok(c) = redis::Client::open(url())
            && let Ok(mut conn) = c.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut conn)
                .unwrap_or_default();
            for k in keys {
                let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut conn);
            }
        }
    }
}

fn queue_or_skip(test: &str) -> Option<Queue> {
    let reached = redis::Client::open(url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    match reached {
        Ok(_) => Some(Queue(format!(
            "eventflow-test:cli-{test}:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))),
        Err(e) if std::env::var("EVENTFLOW_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!(
                "Redis is required (EVENTFLOW_REQUIRE_REDIS=1) but {} cannot be reached: {e}",
                url()
            )
        }
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: Redis at {} cannot be reached ({e}); set EVENTFLOW_REQUIRE_REDIS=1 to make this a failure !!!!!!!!\n",
                url()
            );
            None
        }
    }
}

/// Runs the binary on queue `q`: (exit code, stdout, stderr).
fn run(q: &Queue, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args(["--redis", &url(), "--queue", &q.0])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(q: &Queue, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = run(q, &all);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// A worker on `q` whose handlers always fail, with `n` dead letters of each.
async fn letters(q: &Queue, n: usize) -> EventBus {
    let mut cfg = RedisConfig::new(url());
    cfg.queue = q.0.clone();
    cfg.block = Duration::from_millis(100);
    cfg.promote_interval = Duration::from_millis(20);
    let bus = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .handler(Handler::new("billing", "invoice.*", |_e, _ctx| async {
            Err::<(), _>(HandlerError::permanent_msg("card declined"))
        }))
        .handler(Handler::new("mailer", "mail.*", |_e, _ctx| async {
            Err::<(), _>(HandlerError::permanent_msg("smtp down"))
        }))
        .build()
        .await
        .unwrap();
    bus.start().await.unwrap();
    for i in 0..n {
        for name in ["invoice.due", "mail.send"] {
            let env = Envelope::with_payload(name.into(), Payload::json(json!({ "n": i })));
            bus.publish_envelope(env).await.unwrap();
        }
    }
    let start = std::time::Instant::now();
    while bus.dead_letters().await.unwrap().len() < 2 * n {
        assert!(start.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_show_retry_and_remove() {
    let Some(q) = queue_or_skip("letters") else {
        return;
    };
    let bus = letters(&q, 30).await;
    let (code, out, _) = run(&q, &["dead-letters", "list", "--handler", "billing"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID"), "a table: {out}");
    assert_eq!(out.lines().count(), 31, "a header and 30 rows");
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.contains("billing") && l.contains("card declined"))
    );
    let v = json_of(&q, &["dead-letters", "list", "--event", "mail.send"]);
    let mail = v["letters"].as_array().unwrap();
    assert_eq!(mail.len(), 30);
    let id = mail[0]["id"].as_str().unwrap().to_owned();
    let v = json_of(&q, &["dead-letters", "show", &id]);
    assert_eq!(v["handler"], "mailer");
    assert_eq!(v["envelope"]["name"], "mail.send");
    let (code, out, _) = run(&q, &["dead-letters", "show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("smtp down"));
    // Unknown and malformed ids.
    let (code, _, err) = run(
        &q,
        &[
            "dead-letters",
            "show",
            "00000000-0000-0000-0000-000000000000",
        ],
    );
    assert_eq!(code, 3, "not found: {err}");
    let (code, _, err) = run(&q, &["dead-letters", "show", "nope"]);
    assert_eq!(code, 2, "usage: {err}");
    let (code, _, err) = run(&q, &["dead-letters", "retry"]);
    assert_eq!(code, 2, "neither an id nor --all: {err}");
    // Remove one, then retry all of billing's (queued for a worker, failing again).
    let (code, out, _) = run(&q, &["dead-letters", "remove", &id]);
    assert_eq!((code, out.trim()), (0, "removed 1, failed 0, not found 0"));
    let (code, _, _) = run(&q, &["dead-letters", "remove", &id]);
    assert_eq!(code, 3, "already gone");
    let v = json_of(
        &q,
        &["dead-letters", "retry", "--all", "--handler", "billing"],
    );
    assert_eq!(v["retried"], 30, "{v}");
    let v = json_of(&q, &["dead-letters", "remove", "--all", "--search", "SMTP"]);
    assert_eq!(v["removed"], 29, "{v}");
    bus.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_workers_delayed_and_schedules() {
    let Some(q) = queue_or_skip("stats") else {
        return;
    };
    let bus = letters(&q, 2).await;
    let v = json_of(&q, &["stats"]);
    assert_eq!(v["dead_letters"], 4);
    assert_eq!(v["reachable"], true);
    let (code, out, _) = run(&q, &["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("DEAD LETTERS"));
    let v = json_of(&q, &["workers"]);
    let workers = v["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{v}");
    assert!(
        workers[0]["name"]
            .as_str()
            .unwrap()
            .contains(&std::process::id().to_string())
    );
    // A delayed event, listed and cancelled.
    let env = Envelope::with_payload("invoice.later".into(), Payload::json(json!({})));
    let event_id = env.id.to_string();
    bus.publish_envelope_delayed(env, Duration::from_secs(3600))
        .await
        .unwrap();
    let v = json_of(&q, &["delayed", "list"]);
    let list = v["delayed"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], event_id.as_str());
    assert_eq!(list[0]["event"], "invoice.later");
    let (code, out, _) = run(&q, &["delayed", "cancel", &event_id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        json_of(&q, &["delayed", "list"])["delayed"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, _, _) = run(&q, &["delayed", "cancel", &event_id]);
    assert_eq!(code, 3);
    let v = json_of(&q, &["schedules"]);
    assert!(v["schedules"].as_array().unwrap().is_empty());
    // An unreachable server: exit code 1, the URL's password not shown.
    let out = Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args([
            "--redis",
            "redis://user:hunter2@127.0.0.1:1/0",
            "--queue",
            &q.0,
            "stats",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("hunter2"), "{err}");
    bus.shutdown().await.unwrap();
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["dead-letters", "list", "--help"],
        vec!["dead-letters", "show", "--help"],
        vec!["dead-letters", "retry", "--help"],
        vec!["dead-letters", "remove", "--help"],
        vec!["stats", "--help"],
        vec!["workers", "--help"],
        vec!["delayed", "list", "--help"],
        vec!["delayed", "cancel", "--help"],
        vec!["schedules", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_eventflow"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
}
