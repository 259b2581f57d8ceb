//! The fault suite: runs of thousands of events while the Redis server is killed and
//! restarted, or full, and while a worker is stopped (SIGSTOP) past `claim_idle` and then
//! resumed. Every event is handled at least once, duplicates stay bounded, and nothing is
//! left pending. The servers are the tests' own (started on ports of their own, stopped by
//! their PIDs), except for the SIGSTOP test, which uses the shared one on its own prefix.
#![allow(clippy::unwrap_used)] // test code

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::{EventBus, Handler, HandlerError};
use eventflow_tests::{OwnRedis, raw_envelope, redis_or_skip};

const EVENTS: u64 = 10_000;

/// Times each event number was handled.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<HashMap<u64, u32>>>);

impl Counts {
    fn handler(&self) -> Handler {
        let me = self.clone();
        Handler::new("count", "fault.*", move |e, _ctx| {
            let n = e.payload.to_json().ok().and_then(|v| v["n"].as_u64());
            if let Some(n) = n {
                *me.0.lock().unwrap().entry(n).or_default() += 1;
            }
            async { Ok::<(), HandlerError>(()) }
        })
    }
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn total(&self) -> u64 {
        self.0.lock().unwrap().values().map(|c| u64::from(*c)).sum()
    }
}

fn config(server: &OwnRedis) -> RedisConfig {
    let mut cfg = RedisConfig::new(server.url(None));
    cfg.queue = "faults".into();
    cfg.block = Duration::from_millis(100);
    cfg.claim_idle = Duration::from_secs(1);
    cfg.publish_timeout = Duration::from_secs(1);
    cfg
}

async fn worker(cfg: RedisConfig, counts: &Counts) -> EventBus {
    let bus = EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .handler(counts.handler())
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    bus.start().await.unwrap();
    bus
}

/// Publishes event `n`, trying again while the server refuses or cannot be reached;
/// returns how many tries failed.
async fn publish_until_accepted(bus: &EventBus, n: u64) -> u32 {
    let mut failed = 0;
    loop {
        match bus
            .publish_envelope(raw_envelope("fault.item", serde_json::json!({ "n": n })))
            .await
        {
            Ok(()) => return failed,
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server is killed (SIGKILL) a third of the way through 10,000 events and started
/// again from its append-only file: every event is handled, at most a bounded number twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run_loses_nothing() {
    let Some(mut server) = OwnRedis::start(
        "fault_restart",
        &["--appendonly", "yes", "--appendfsync", "always"],
    )
    .await
    else {
        return;
    };
    let counts = Counts::default();
    let w = worker(config(&server), &counts).await;
    let publisher = eventflow_tests::redis_publisher(config(&server)).await;
    let publishing = tokio::spawn(async move {
        let mut refused = 0u32;
        for n in 0..EVENTS {
            refused += publish_until_accepted(&publisher, n).await;
        }
        refused
    });
    wait_for("a third of the events", Duration::from_secs(120), || {
        counts.distinct() as u64 >= EVENTS / 3
    })
    .await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await;
    let refused = publishing.await.unwrap();
    wait_for("every event", Duration::from_secs(120), || {
        counts.distinct() as u64 == EVENTS
    })
    .await;
    eventflow_tests::wait_acknowledged(&w, "entries left pending").await;
    let duplicates = counts.total() - EVENTS;
    eprintln!("restart: {refused} publish tries refused while down, {duplicates} duplicates");
    assert!(refused > 0, "the server was never seen down");
    assert!(duplicates <= 1_000, "{duplicates} events handled twice");
    w.shutdown().await.unwrap();
}

/// The server fills up (`maxmemory`, `noeviction`) in the middle of a run: publishes are
/// refused with an error saying so, the worker still acknowledges what it handles (nothing
/// is redelivered for lack of memory), and once room is made every accepted event is
/// handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_at_maxmemory_mid_run_loses_nothing() {
    let Some(server) = OwnRedis::start(
        "fault_maxmemory",
        &["--maxmemory", "32mb", "--maxmemory-policy", "noeviction"],
    )
    .await
    else {
        return;
    };
    let counts = Counts::default();
    let w = worker(config(&server), &counts).await;
    let publisher = eventflow_tests::redis_publisher(config(&server)).await;
    for n in 0..EVENTS / 2 {
        publisher
            .publish_envelope(raw_envelope("fault.item", serde_json::json!({ "n": n })))
            .await
            .unwrap();
    }
    // Fill what is left while the worker is still busy with the first half. (Its
    // acknowledgements free memory meanwhile, so fill again until a publish is refused;
    // an event accepted on the way counts like any other.)
    let mut fillers = server.fill_until_refused().await;
    let mut next = EVENTS / 2;
    let err = loop {
        match publisher
            .publish_envelope(raw_envelope("fault.item", serde_json::json!({ "n": next })))
            .await
        {
            Ok(()) => {
                next += 1;
                fillers.fill().await;
            }
            Err(e) => break e,
        }
        assert!(next < EVENTS, "the server never refused a publish");
    };
    assert!(err.to_string().contains("could not accept"), "{err}");
    // Full, the worker still settles what it has: the first half is handled and acknowledged.
    wait_for("the first half", Duration::from_secs(120), || {
        counts.distinct() as u64 == next
    })
    .await;
    eventflow_tests::wait_acknowledged(&w, "entries left pending").await;
    fillers.free().await;
    for n in next..EVENTS {
        publish_until_accepted(&publisher, n).await;
    }
    wait_for("every event", Duration::from_secs(120), || {
        counts.distinct() as u64 == EVENTS
    })
    .await;
    eventflow_tests::wait_acknowledged(&w, "entries left pending").await;
    let duplicates = counts.total() - EVENTS;
    assert!(duplicates <= 100, "{duplicates} events handled twice");
    w.shutdown().await.unwrap();
}

const WORKER: &str = env!("CARGO_BIN_EXE_eventflow-test-worker");

async fn spawn_worker(url: &str, queue: &str, claim_idle_ms: u64) -> tokio::process::Child {
    let claim = claim_idle_ms.to_string();
    eventflow_tests::spawn_test_worker(WORKER, &[url, queue, "worker", &claim, "64"])
        .await
        .0
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// `(id, consumer)` of every pending entry of the group.
async fn pending_owners(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<(String, String)> {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg("workers")
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(conn)
        .await
        .unwrap();
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    match v {
        redis::Value::Array(rows) => rows
            .iter()
            .filter_map(|r| match r {
                redis::Value::Array(c) if c.len() >= 2 => Some((text(&c[0]), text(&c[1]))),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A worker stopped (SIGSTOP) with entries in hand, past `claim_idle`: another worker claims
/// them. Resumed, the first one finishes its handlers, but its late acknowledgements and
/// lease refreshes leave the claimed entries to their new owner, who settles each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_claim_idle_leaves_claimed_entries_to_their_new_owner() {
    let Some(t) = redis_or_skip("sigstop").await else {
        return;
    };
    let mut conn = t.conn().await;
    let a = spawn_worker(&t.url, &t.queue, 1000).await;
    let a_pid = a.id().unwrap();
    let publisher = eventflow_tests::redis_publisher(t.config()).await;
    for n in 0..20u64 {
        publisher
            .publish_envelope(raw_envelope(
                "work.item",
                serde_json::json!({ "n": n, "sleep_ms": 2500 }),
            ))
            .await
            .unwrap();
    }
    let start = Instant::now();
    while pending_owners(&mut conn, &t.stream()).await.len() < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "A never took the entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(a_pid, "-STOP");
    let b = spawn_worker(&t.url, &t.queue, 1000).await;
    let b_pid = b.id().unwrap().to_string();
    let start = Instant::now();
    loop {
        let owners = pending_owners(&mut conn, &t.stream()).await;
        if owners.len() == 20
            && owners
                .iter()
                .all(|(_, c)| c.contains(&format!("-{b_pid}-")))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "B never claimed them: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(a_pid, "-CONT");
    // A's handlers were due while it was stopped: they finish now, before B's.
    let handled_by = |rows: &[String], pid: &str| {
        rows.iter()
            .filter(|r| r.ends_with(&format!(" {pid}")))
            .count()
    };
    let start = Instant::now();
    let rows = loop {
        let rows: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}:handled", t.queue))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        if handled_by(&rows, &a_pid.to_string()) == 20 {
            break rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "A never finished: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Give A's acknowledgements and a lease refresh time to go out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owners = pending_owners(&mut conn, &t.stream()).await;
    let b_finished = handled_by(&rows, &b_pid);
    if b_finished == 0 {
        assert_eq!(
            owners.len(),
            20,
            "A's late acknowledgements took B's entries: {owners:?}"
        );
        assert!(
            owners
                .iter()
                .all(|(_, c)| c.contains(&format!("-{b_pid}-"))),
            "A's lease refresh took B's entries back: {owners:?}"
        );
    }
    // B settles each of them.
    let start = Instant::now();
    loop {
        let rows: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}:handled", t.queue))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let owners = pending_owners(&mut conn, &t.stream()).await;
        if handled_by(&rows, &b_pid) == 20 && owners.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "B never settled them: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for mut child in [a, b] {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
}
