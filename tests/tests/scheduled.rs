//! Scheduled functions on the memory backend: registered with `#[scheduled]` or built at
//! run time; ticks on the schedule, missed-tick policies, failures, timeouts, shutdown.
#![allow(clippy::unwrap_used)] // test code

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use eventflow::prelude::*;
use eventflow::{MissedTicks, Schedule, ScheduledJob, ScheduledJobStats};
use eventflow_tests::wait_until;

static COUNT_TICKS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static BLOCKING_RUNS: AtomicU32 = AtomicU32::new(0);
static CRON_RUNS: AtomicU32 = AtomicU32::new(0);

fn millis(ctx: &ScheduleContext) -> u64 {
    ctx.tick().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[scheduled(every = "50ms", name = "test.count")]
async fn count(ctx: &ScheduleContext) {
    COUNT_TICKS.lock().unwrap().push(millis(ctx));
}

#[scheduled(every = "50ms", name = "test.blocking")]
fn blocking() {
    std::thread::sleep(Duration::from_millis(1));
    BLOCKING_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[scheduled(cron = "* * * * * *", name = "test.cron")]
async fn every_second(ctx: ScheduleContext) -> Result<(), HandlerError> {
    assert_eq!(millis(&ctx) % 1000, 0, "cron ticks fall on whole seconds");
    CRON_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[scheduled(every = "50ms", name = "test.fails")]
async fn fails() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("disk full"))
}

#[scheduled(every = "50ms", name = "test.panics")]
fn panics() {
    panic!("scheduled function panicked");
}

fn stats(bus: &EventBus, name: &str) -> ScheduledJobStats {
    bus.schedule_stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no schedule {name}"))
}

/// The only test here whose bus takes the registry: the others use run-time functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_functions_run_on_their_ticks_and_stop_at_shutdown() {
    let bus = EventBus::builder()
        .allow_unhandled(true)
        .build()
        .await
        .unwrap();
    assert!(bus.describe().contains("test.count (scheduled)"));
    wait_until("every registered function to run", || {
        COUNT_TICKS.lock().unwrap().len() >= 3
            && BLOCKING_RUNS.load(Ordering::SeqCst) >= 3
            && CRON_RUNS.load(Ordering::SeqCst) >= 1
            && stats(&bus, "test.fails").failed >= 2
            && stats(&bus, "test.panics").failed >= 2
    })
    .await;
    let ticks = COUNT_TICKS.lock().unwrap().clone();
    assert!(ticks.iter().all(|t| t % 50 == 0), "{ticks:?}");
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    let count = stats(&bus, "test.count");
    assert!(count.succeeded >= 3 && count.failed == 0, "{count:?}");
    assert_eq!(stats(&bus, "test.fails").succeeded, 0);
    assert_eq!(stats(&bus, "test.panics").succeeded, 0);

    bus.shutdown().await.unwrap();
    let (n, b) = (
        COUNT_TICKS.lock().unwrap().len(),
        BLOCKING_RUNS.load(Ordering::SeqCst),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(COUNT_TICKS.lock().unwrap().len(), n, "ran after shutdown");
    assert_eq!(
        BLOCKING_RUNS.load(Ordering::SeqCst),
        b,
        "ran after shutdown"
    );
}

/// A run-time function recording its ticks; the first run is busy for `busy`.
fn recorder(name: &str, every_ms: u64, busy: Duration) -> (ScheduledJob, Arc<Mutex<Vec<u64>>>) {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = ticks.clone();
    let s = ScheduledJob::new(
        name,
        Schedule::every(Duration::from_millis(every_ms)).unwrap(),
        move |ctx| {
            let t = t.clone();
            async move {
                let first = {
                    let mut t = t.lock().unwrap();
                    t.push(millis(&ctx));
                    t.len() == 1
                };
                if first {
                    tokio::time::sleep(busy).await;
                }
                Ok::<(), HandlerError>(())
            }
        },
    );
    (s, ticks)
}

#[tokio::test]
async fn schedules_off_runs_nothing() {
    let (s, ticks) = recorder("off", 20, Duration::ZERO);
    let bus = EventBus::builder()
        .without_registry()
        .schedules(false)
        .scheduled(s)
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ticks.lock().unwrap().is_empty());
    assert!(bus.schedule_stats().is_empty());
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn skip_runs_only_the_latest_missed_tick() {
    let (s, ticks) = recorder("skip", 50, Duration::from_millis(170));
    let bus = EventBus::builder()
        .without_registry()
        .scheduled(s.missed(MissedTicks::Skip))
        .build()
        .await
        .unwrap();
    wait_until("four runs", || ticks.lock().unwrap().len() >= 4).await;
    bus.shutdown().await.unwrap();
    let ticks = ticks.lock().unwrap().clone();
    // Busy for 170ms after tick T: T+50 and T+100 are dropped, T+150 runs.
    assert!(ticks[1] - ticks[0] >= 150, "{ticks:?}");
    assert!(ticks.iter().all(|t| t % 50 == 0), "{ticks:?}");
}

#[tokio::test]
async fn catch_up_runs_every_missed_tick_in_order() {
    let (s, ticks) = recorder("catch-up", 50, Duration::from_millis(170));
    let bus = EventBus::builder()
        .without_registry()
        .scheduled(s.missed(MissedTicks::CatchUp))
        .build()
        .await
        .unwrap();
    wait_until("six runs", || ticks.lock().unwrap().len() >= 6).await;
    bus.shutdown().await.unwrap();
    let ticks = ticks.lock().unwrap().clone();
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 50), "{ticks:?}");
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_and_the_schedule_goes_on() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let s = ScheduledJob::new(
        "slow",
        Schedule::every(Duration::from_millis(30)).unwrap(),
        move |_ctx| {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), HandlerError>(())
            }
        },
    )
    .timeout(Duration::from_millis(20));
    let bus = EventBus::builder()
        .without_registry()
        .scheduled(s)
        .build()
        .await
        .unwrap();
    wait_until("two failed runs", || stats(&bus, "slow").failed >= 2).await;
    assert_eq!(stats(&bus, "slow").succeeded, 0);
    assert!(runs.load(Ordering::SeqCst) >= 2);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_scheduled_function_publishes_through_its_context() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .header("tenant", "acme")
        .handler(Handler::new("report", "report.due", move |env, _ctx| {
            let s = s2.clone();
            async move {
                let tick = env.payload_json()?["tick"].as_u64().unwrap_or(0);
                let tenant = env.headers.get("tenant").unwrap_or("-").to_owned();
                s.lock().unwrap().push(format!("{tick} {tenant}"));
                Ok::<(), HandlerError>(())
            }
        }))
        .scheduled(ScheduledJob::new(
            "reports",
            Schedule::every(Duration::from_millis(40)).unwrap(),
            |ctx| async move {
                let tick = millis(&ctx);
                ctx.bus()
                    .publish_raw("report.due", serde_json::json!({ "tick": tick }))
                    .await?;
                Ok::<(), HandlerError>(())
            },
        ))
        .build()
        .await
        .unwrap();
    wait_until("two reports", || seen.lock().unwrap().len() >= 2).await;
    bus.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    for entry in &seen {
        let (tick, tenant) = entry.split_once(' ').unwrap();
        assert_eq!(tick.parse::<u64>().unwrap() % 40, 0, "{seen:?}");
        assert_eq!(tenant, "acme");
    }
}

#[tokio::test]
async fn invalid_schedules_are_rejected() {
    let err = Schedule::cron("*/5 * * *").unwrap_err();
    assert!(err.contains("4 field(s)"), "{err}");
    assert!(Schedule::every(Duration::from_micros(10)).is_err());
    let noop = |_ctx: ScheduleContext| async { Ok::<(), HandlerError>(()) };
    let every = || Schedule::every(Duration::from_secs(1)).unwrap();
    let err = EventBus::builder()
        .without_registry()
        .scheduled(ScheduledJob::new("twice", every(), noop))
        .scheduled(ScheduledJob::new("twice", every(), noop))
        .build()
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("two scheduled functions are named `twice`"),
        "{err}"
    );
}
