//! Operating on Redis across processes: scheduled functions fire once per tick among
//! workers, catch up on ticks missed while every worker was down, and trace context and
//! headers cross processes.
#![allow(clippy::unwrap_used)] // test code

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow::{Envelope, EventBus, HandlerError, MissedTicks, Payload, Schedule, ScheduledJob};
use eventflow_tests::{RedisTest, redis_or_skip, span_field};
use tokio::io::{BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const WORKER: &str = env!("CARGO_BIN_EXE_eventflow-test-worker");

async fn spawn_worker(t: &RedisTest, mode: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    eventflow_tests::spawn_test_worker(WORKER, &[&t.url, &t.queue, mode]).await
}

/// Closes the worker's stdin (a graceful shutdown) and returns what it printed after.
async fn stop(mut child: Child, mut lines: Lines<BufReader<ChildStdout>>) -> Vec<String> {
    drop(child.stdin.take());
    let mut out = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
    {
        out.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "worker exited with {status}");
    out
}

async fn list(t: &RedisTest, suffix: &str) -> Vec<String> {
    let mut c = t.conn().await;
    redis::cmd("LRANGE")
        .arg(format!("{}:{suffix}", t.queue))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn wait_for_list(t: &RedisTest, suffix: &str, n: usize) -> Vec<String> {
    for _ in 0..3000 {
        let l = list(t, suffix).await;
        if l.len() >= n {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {n} entries in {suffix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_function_runs_once_per_tick_across_worker_processes() {
    let Some(t) = redis_or_skip("scheduled_processes").await else {
        return;
    };
    let (a, a_out) = spawn_worker(&t, "scheduled").await;
    let (b, b_out) = spawn_worker(&t, "scheduled").await;
    wait_for_list(&t, "ticks", 15).await;
    stop(a, a_out).await;
    stop(b, b_out).await;
    let entries = list(&t, "ticks").await;
    let mut by_tick: HashMap<u64, Vec<&str>> = HashMap::new();
    for e in &entries {
        let (tick, pid) = e.split_once(' ').unwrap();
        by_tick.entry(tick.parse().unwrap()).or_default().push(pid);
    }
    let twice: Vec<_> = by_tick.iter().filter(|(_, pids)| pids.len() > 1).collect();
    assert!(twice.is_empty(), "ticks run more than once: {twice:?}");
    assert!(by_tick.keys().all(|t| t % 100 == 0), "{entries:?}");
    // The lease key holds the last tick run.
    let mut c = t.conn().await;
    let last: u64 = redis::cmd("GET")
        .arg(format!("{}:sched:worker.tick", t.queue))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(Some(&last), by_tick.keys().max());
}

fn redis_cfg(t: &RedisTest) -> RedisConfig {
    let mut cfg = RedisConfig::new(&t.url);
    cfg.queue = t.queue.clone();
    cfg.block = Duration::from_millis(100);
    cfg
}

fn recording(
    name: &str,
    ticks: &Arc<Mutex<Vec<(u64, &'static str)>>>,
    who: &'static str,
) -> ScheduledJob {
    let ticks = ticks.clone();
    ScheduledJob::new(
        name,
        Schedule::every(Duration::from_millis(50)).unwrap(),
        move |ctx| {
            let ticks = ticks.clone();
            async move {
                let ms = ctx.tick().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                ticks.lock().unwrap().push((ms, who));
                Ok::<(), HandlerError>(())
            }
        },
    )
}

async fn worker(t: &RedisTest, s: ScheduledJob) -> EventBus {
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(redis_cfg(t))
        .scheduled(s)
        .build()
        .await
        .unwrap();
    bus.start().await.unwrap();
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_ticks_and_catch_up_on_ticks_missed_while_down() {
    let Some(t) = redis_or_skip("scheduled_catch_up").await else {
        return;
    };
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let a = worker(
        &t,
        recording("sweep", &ticks, "a").missed(MissedTicks::CatchUp),
    )
    .await;
    let b = worker(
        &t,
        recording("sweep", &ticks, "b").missed(MissedTicks::CatchUp),
    )
    .await;
    for _ in 0..1000 {
        if ticks.lock().unwrap().len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (sa, sb) = tokio::join!(a.shutdown(), b.shutdown());
    sa.unwrap();
    sb.unwrap();
    let stats: Vec<_> = [&a, &b]
        .iter()
        .map(|bus| bus.schedule_stats()[0].clone())
        .collect();
    let ran = stats.iter().map(|s| s.succeeded).sum::<u64>();
    let refused = stats.iter().map(|s| s.claimed_elsewhere).sum::<u64>();
    let before: Vec<u64> = ticks.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert_eq!(ran as usize, before.len());
    // Each tick was offered to both workers and granted to one (but for the first and
    // last few, while only one was running).
    assert!(refused + 3 >= ran, "{stats:?}");
    let mut sorted = before.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), before.len(), "a tick ran twice: {before:?}");
    let last = *sorted.last().unwrap();

    // Every worker is down for 300ms; the next one runs the ticks missed meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = worker(
        &t,
        recording("sweep", &ticks, "c").missed(MissedTicks::CatchUp),
    )
    .await;
    for _ in 0..1000 {
        let n = ticks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, w)| *w == "c")
            .count();
        if n >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.shutdown().await.unwrap();
    let after: Vec<u64> = ticks
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, w)| *w == "c")
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        after[0],
        last + 50,
        "the first missed tick runs first: {after:?}"
    );
    assert!(after.windows(2).all(|w| w[1] - w[0] == 50), "{after:?}");
}

#[test]
fn trace_context_and_headers_cross_worker_processes() {
    let (capture, _default, rt) = eventflow_tests::span_capture_runtime();
    let (worker_out, recorded) = rt.block_on(async {
        let Some(t) = redis_or_skip("trace_processes").await else {
            return (Vec::new(), Vec::new());
        };
        let (child, out) = spawn_worker(&t, "trace").await;
        let publisher = EventBus::builder()
            .without_registry()
            .allow_unhandled(true)
            .header("tenant", "acme")
            .redis_config(redis_cfg(&t))
            .build()
            .await
            .unwrap();
        publisher
            .publish_envelope(
                Envelope::with_payload("trace.start".into(), Payload::json(serde_json::json!({})))
                    .with_header("request-id", "r-42"),
            )
            .await
            .unwrap();
        let recorded = wait_for_list(&t, "trace", 2).await;
        publisher.shutdown().await.unwrap();
        (stop(child, out).await, recorded)
    });
    if worker_out.is_empty() && recorded.is_empty() {
        return; // skipped
    }
    // Headers set on the publishing bus and on the publish reach the worker's handler and
    // the event that handler publishes in turn.
    assert_eq!(
        recorded,
        vec!["trace.start acme r-42", "trace.next acme r-42"]
    );

    let mine = capture.spans();
    let publish = &mine
        .iter()
        .find(|(n, _)| n == "eventflow.publish")
        .unwrap()
        .1;
    let trace_id = span_field(publish, "trace_id").unwrap();
    let theirs: Vec<(String, String)> = worker_out
        .iter()
        .filter_map(|l| l.strip_prefix("SPAN "))
        .map(|l| {
            let (name, fields) = l.split_once(' ').unwrap_or((l, ""));
            (name.to_owned(), fields.to_owned())
        })
        .collect();
    let find = |name: &str, event: &str| {
        theirs
            .iter()
            .find(|(n, f)| n == name && span_field(f, "event") == Some(event))
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} of {event} in {theirs:?}"))
    };
    let deliver = find("eventflow.deliver", "trace.start");
    let attempt = find("eventflow.attempt", "trace.start");
    let follow_up = find("eventflow.publish", "trace.next");
    let next = find("eventflow.deliver", "trace.next");
    for f in [&deliver, &attempt, &follow_up, &next] {
        assert_eq!(span_field(f, "trace_id"), Some(trace_id), "{f}");
    }
    // The worker's delivery is a child of the publisher's publish span.
    assert_eq!(
        span_field(&deliver, "parent_id"),
        span_field(publish, "span_id")
    );
    assert_eq!(
        span_field(&attempt, "parent_id"),
        span_field(&deliver, "span_id")
    );
    assert_eq!(
        span_field(&follow_up, "parent_id"),
        span_field(&attempt, "span_id")
    );
    assert_eq!(
        span_field(&next, "parent_id"),
        span_field(&follow_up, "span_id")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_on_redis_are_acknowledged_once_settled_and_dead_lettered_event_by_event() {
    let Some(t) = redis_or_skip("batching").await else {
        return;
    };
    let sizes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let s = sizes.clone();
    let config = eventflow::BatchConfig {
        max_size: 8,
        max_wait: Duration::from_millis(100),
    };
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(redis_cfg(&t))
        .handler(
            eventflow::Handler::batch_of("sum", "num.*", config, move |ns: Vec<u64>, _ctx| {
                s.lock().unwrap().push(ns.len());
                let poisoned = ns.contains(&999);
                async move {
                    if poisoned {
                        return Err(HandlerError::msg("cannot store 999"));
                    }
                    Ok(())
                }
            })
            .retry(eventflow::RetryPolicy::attempts(2).backoff(0.0, 0.0)),
        )
        .build()
        .await
        .unwrap();
    worker.start().await.unwrap();
    let publisher = eventflow_tests::redis_publisher(redis_cfg(&t)).await;
    for n in 0..20u64 {
        publisher
            .publish_raw("num.value", serde_json::json!(n))
            .await
            .unwrap();
    }
    for _ in 0..1000 {
        if sizes.lock().unwrap().iter().sum::<usize>() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handled = sizes.lock().unwrap().clone();
    assert_eq!(handled.iter().sum::<usize>(), 20, "{handled:?}");
    assert!(handled.iter().all(|&n| n <= 8), "{handled:?}");
    assert!(
        handled.iter().any(|&n| n > 1),
        "events were not batched: {handled:?}"
    );

    publisher
        .publish_raw("num.value", serde_json::json!(999))
        .await
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..1000 {
        dead = worker.dead_letters().await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].error.contains("cannot store 999"),
        "{}",
        dead[0].error
    );
    for _ in 0..1000 {
        if worker.health().await.pending == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        worker.health().await.pending,
        Some(0),
        "entries left unacknowledged"
    );
    publisher.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
}
