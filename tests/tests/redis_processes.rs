//! Several worker processes on one Redis consumer group: exactly once without crashes, at
//! least once with a worker killed by SIGKILL, and the failed-jobs API from another process.
#![allow(clippy::unwrap_used)] // test code

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::{Envelope, EventBus, Payload};
use eventflow_tests::{RedisTest, redis_or_skip};
use tokio::process::Child;

const WORKER: &str = env!("CARGO_BIN_EXE_eventflow-test-worker");

async fn spawn_worker(t: &RedisTest, claim_idle_ms: u64, max_in_flight: usize) -> Child {
    let (claim, in_flight) = (claim_idle_ms.to_string(), max_in_flight.to_string());
    eventflow_tests::spawn_test_worker(WORKER, &[&t.url, &t.queue, "worker", &claim, &in_flight])
        .await
        .0
}

async fn stop_gracefully(mut child: Child) {
    drop(child.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "worker exited with {status}");
}

async fn publisher(t: &RedisTest) -> EventBus {
    let mut cfg = RedisConfig::new(&t.url);
    cfg.queue = t.queue.clone();
    cfg.pool_min = 2;
    EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .unwrap()
}

async fn publish_numbers(bus: &EventBus, range: std::ops::Range<u64>) {
    let mut tasks = Vec::new();
    for chunk in range.collect::<Vec<_>>().chunks(500) {
        let bus = bus.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for n in chunk {
                let env = Envelope::with_payload(
                    "work.item".into(),
                    Payload::json(serde_json::json!({ "n": n })),
                );
                bus.publish_envelope(env).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// `n -> (times handled, processes that handled it)`.
async fn handled(t: &RedisTest) -> HashMap<u64, (usize, Vec<String>)> {
    let mut conn = t.conn().await;
    let rows: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{}:handled", t.queue))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut out: HashMap<u64, (usize, Vec<String>)> = HashMap::new();
    for row in rows {
        let (n, who) = row.split_once(' ').unwrap();
        let e = out.entry(n.parse().unwrap()).or_default();
        e.0 += 1;
        e.1.push(who.to_owned());
    }
    out
}

async fn handled_len(t: &RedisTest) -> usize {
    let mut conn = t.conn().await;
    redis::cmd("LLEN")
        .arg(format!("{}:handled", t.queue))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_work_exactly_once() {
    let Some(t) = redis_or_skip("two_workers").await else {
        return;
    };
    let a = spawn_worker(&t, 30_000, 64).await;
    let b = spawn_worker(&t, 30_000, 64).await;
    let bus = publisher(&t).await;
    publish_numbers(&bus, 0..2_000).await;
    let start = Instant::now();
    while handled_len(&t).await < 2_000 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} handled",
            handled_len(&t).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_gracefully(a).await;
    stop_gracefully(b).await;
    let h = handled(&t).await;
    assert_eq!(h.len(), 2_000);
    assert!(
        h.values().all(|(times, _)| *times == 1),
        "an event was handled twice without any crash"
    );
    let mut per_process: HashMap<&str, usize> = HashMap::new();
    for (_, who) in h.values() {
        *per_process.entry(who[0].as_str()).or_default() += 1;
    }
    assert_eq!(
        per_process.len(),
        2,
        "both processes took work: {per_process:?}"
    );
    assert_eq!(bus.health().await.pending, Some(0));
}

/// The peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 100 MiB entry written into the stream by hand (over the default `max_entry_bytes` of
/// 1 MiB): the worker process dead-letters it from a cut of its fields without ever
/// receiving it whole (its peak memory stays far below the entry's size), and handles the
/// events after it.
/// (Both cases in one test, one after the other: two 100 MiB entries at once keep the
/// server busy long enough to slow the other tests' commands.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_receives_or_claims_an_oversized_entry_whole() {
    oversized_entry("huge_entry", false).await;
    // The same when the entry is claimed from a consumer that read it and died.
    oversized_entry("huge_claimed", true).await;
}

async fn oversized_entry(test: &str, left_by_a_dead_consumer: bool) {
    let Some(t) = redis_or_skip(test).await else {
        return;
    };
    // On a connection of its own: 100 MiB takes longer than the helper's reply timeout.
    let mut writer = redis::Client::open(t.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await
        .unwrap();
    let create: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(t.stream())
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut writer)
        .await;
    create.unwrap();
    redis::cmd("XADD")
        .arg(t.stream())
        .arg("*")
        .arg("envelope")
        .arg("x".repeat(100 << 20))
        .query_async::<String>(&mut writer)
        .await
        .unwrap();
    if left_by_a_dead_consumer {
        // A consumer that read it and was never seen again.
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("workers")
            .arg("ghost")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(t.stream())
            .arg(">")
            .query_async::<redis::Value>(&mut writer)
            .await
            .unwrap();
    }
    // Claims after 2 s idle: long enough that a slow server's acknowledgement of the
    // first claim lands before the next claim round.
    let worker = spawn_worker(&t, 2_000, 64).await;
    let pid = worker.id().unwrap();
    let before = peak_rss_kib(pid);
    let bus = publisher(&t).await;
    publish_numbers(&bus, 0..10).await;
    let start = Instant::now();
    // The no-timeout connection: the server may be busy a moment with 100 MiB entries
    // (another test's too).
    let conn = &mut writer;
    loop {
        let letters: u64 = redis::cmd("HLEN")
            .arg(format!("{}:dead", t.queue))
            .query_async(conn)
            .await
            .unwrap();
        let handled: u64 = redis::cmd("LLEN")
            .arg(format!("{}:handled", t.queue))
            .query_async(conn)
            .await
            .unwrap();
        // At least once: a claimed entry may be dead-lettered twice when its
        // acknowledgement is slower than a claim round.
        if letters >= 1 && handled == 10 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{letters} dead letters, {handled} handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = peak_rss_kib(pid);
    stop_gracefully(worker).await;
    eprintln!("{test}: the worker's peak RSS went from {before} KiB to {peak} KiB");
    assert!(
        peak < before + 32 * 1024,
        "the worker's peak RSS went from {before} KiB to {peak} KiB reading a 100 MiB entry"
    );
    assert_eq!(bus.health().await.pending, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_loses_nothing() {
    let Some(t) = redis_or_skip("sigkill").await else {
        return;
    };
    const TOTAL: u64 = 10_000;
    const IN_FLIGHT: usize = 32;
    let mut victim = spawn_worker(&t, 1_000, IN_FLIGHT).await;
    let bus = publisher(&t).await;
    publish_numbers(&bus, 0..TOTAL).await;
    let start = Instant::now();
    while handled_len(&t).await < 2_000 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.start_kill().unwrap(); // SIGKILL
    victim.wait().await.unwrap();
    let at_kill = handled_len(&t).await;
    assert!(
        (at_kill as u64) < TOTAL,
        "the worker finished before it was killed; nothing was tested"
    );

    let survivor = spawn_worker(&t, 1_000, IN_FLIGHT).await;
    let start = Instant::now();
    loop {
        let h = handled(&t).await;
        if h.len() as u64 == TOTAL {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} of {TOTAL} handled",
            h.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the survivor acknowledge what it handled, then check the group is drained.
    eventflow_tests::wait_acknowledged(&bus, "entries left pending").await;
    stop_gracefully(survivor).await;
    let h = handled(&t).await;
    assert_eq!(h.len() as u64, TOTAL, "every event handled at least once");
    let duplicates: usize = h.values().map(|(times, _)| times - 1).sum();
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates, more than the {IN_FLIGHT} entries the killed worker could have in flight"
    );
    eprintln!("sigkill test: killed after {at_kill} handled; {duplicates} duplicate(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_jobs_are_managed_from_another_process() {
    let Some(t) = redis_or_skip("failed_jobs_process").await else {
        return;
    };
    let worker = spawn_worker(&t, 30_000, 8).await;
    let bus = publisher(&t).await;
    let env = Envelope::with_payload(
        "work.item".into(),
        Payload::json(serde_json::json!({ "n": 1, "fail": true })),
    );
    bus.publish_envelope(env).await.unwrap();
    let admin = |args: &[&str]| {
        let mut cmd = std::process::Command::new(WORKER);
        cmd.args([t.url.as_str(), t.queue.as_str(), "failed"])
            .args(args);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let start = Instant::now();
    let listed = loop {
        let listed = admin(&["list"]);
        if !listed.trim().is_empty() {
            break listed;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no dead letter appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(letter["handler"], "record");
    assert_eq!(letter["error"], "asked to fail");
    assert_eq!(letter["envelope"]["payload"]["n"], 1);
    let id = letter["id"].as_str().unwrap().to_owned();

    // Retried from the admin process: queued, handled again by the worker, failed again.
    assert_eq!(admin(&["retry", &id]).trim(), "Queued");
    let start = Instant::now();
    let second = loop {
        let listed = admin(&["list"]);
        if let Some(line) = listed.lines().next()
            && !line.contains(&id)
        {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the retried job did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(admin(&["remove", &second_id]).trim(), "true");
    assert_eq!(admin(&["remove", &second_id]).trim(), "false");
    assert!(admin(&["list"]).trim().is_empty());
    stop_gracefully(worker).await;
}
