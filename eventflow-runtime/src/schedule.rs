//! Scheduled functions: code that runs on a schedule, `#[scheduled(every = "30s")]` or
//! `#[scheduled(cron = "0 */5 * * * *")]` (basefunctions' `TimerThread`, as functions).
//!
//! A bus runs every registered scheduled function: from [`build`](crate::EventBusBuilder::build)
//! with the memory backend, from [`start`](crate::EventBus::start) with a network backend
//! (where a process that only publishes does not run them). Turn them off with
//! [`EventBusBuilder::schedules(false)`](crate::EventBusBuilder::schedules).
//!
//! ## Ticks
//!
//! - `every = "30s"`: ticks fall on whole multiples of the interval since the Unix epoch
//!   (every 30 s at :00 and :30), so all processes agree on them.
//! - `cron = "sec min hour day-of-month month day-of-week [year]"`: in UTC, six or seven
//!   fields, as the [`cron`] crate reads them (`0 */5 * * * *` is every five minutes).
//!
//! A function runs once per tick; a run that lasts past the next tick delays it (runs of
//! one function never overlap). Ticks that pass while the function runs, while the process
//! is busy, or (with a backend that remembers ticks) while no process is up, are *missed*:
//!
//! | [`MissedTicks`] | what happens |
//! | --- | --- |
//! | `Skip` (default) | only the latest missed tick runs, once; the others are dropped |
//! | `CatchUp` | every missed tick runs, oldest first, at most [`MAX_CATCH_UP`] of them; with Redis this includes ticks missed while every worker was down |
//!
//! ## Once per tick across workers
//!
//! Before a run, the bus claims the tick from its backend
//! ([`Backend::claim_tick`](crate::Backend::claim_tick)). The memory backend always grants
//! it. The Redis backend keeps the last claimed tick of each function at
//! `{queue}:sched:{name}` and grants a tick only if it is later (one atomic script), so
//! among the workers sharing a queue exactly one runs each tick. When the backend cannot
//! be reached, the tick is not run, so that it never runs twice.
//!
//! A run that fails (an error, a panic, or past its `timeout`) is logged and counted
//! (`eventflow_scheduled_runs_total{outcome="failed"}` and
//! [`ScheduleStats::failed`]); it is not retried: the next tick is the next try.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::EventBus;
use crate::error::{EventError, HandlerError};
use crate::event::{Envelope, Event};
use crate::executor::panic_message;
use crate::handler::BoxFuture;
use crate::registry::SourceLocation;
use crate::timer::MissedTicks;

/// Missed ticks caught up at most, per wake-up; older ones are dropped with a warning.
pub const MAX_CATCH_UP: usize = 1000;

/// When a scheduled function runs.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// On whole multiples of the interval since the Unix epoch.
    Every(Duration),
    /// On the ticks of a cron expression, in UTC.
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Every `interval` (at least one millisecond).
    pub fn every(interval: Duration) -> Result<Schedule, String> {
        if interval < Duration::from_millis(1) {
            return Err(format!(
                "an interval must be at least 1ms, not {interval:?}"
            ));
        }
        Ok(Schedule::Every(interval))
    }

    /// On the ticks of `expression` (six or seven fields, seconds first, UTC).
    pub fn cron(expression: &str) -> Result<Schedule, String> {
        cron::Schedule::from_str(expression)
            .map(|s| Schedule::Cron(Box::new(s)))
            .map_err(|_| {
                let n = expression.split_whitespace().count();
                let why = if (6..=7).contains(&n) {
                    "a field is out of range or malformed".to_owned()
                } else {
                    format!("it has {n} field(s)")
                };
                format!(
                    "invalid cron expression `{expression}`: {why}; write six or seven fields, \
                     seconds first (\"0 */5 * * * *\" is every five minutes)"
                )
            })
    }

    /// The first tick strictly after `after_ms` (milliseconds since the Unix epoch).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            Schedule::Every(d) => {
                let step = (d.as_millis() as u64).max(1);
                (after_ms / step).checked_add(1)?.checked_mul(step)
            }
            Schedule::Cron(s) => {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
                    i64::try_from(after_ms).ok()?,
                )?;
                let next = s.after(&at).next()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }

    /// The ticks in `(after_ms, until_ms]` to run under `missed`, oldest first: the latest
    /// one with [`MissedTicks::Skip`], the newest [`MAX_CATCH_UP`] with
    /// [`MissedTicks::CatchUp`] (a cron schedule looks back at most seven days).
    pub fn due(&self, after_ms: u64, until_ms: u64, missed: MissedTicks) -> Vec<u64> {
        let keep = match missed {
            MissedTicks::Skip => 1,
            MissedTicks::CatchUp => MAX_CATCH_UP,
        };
        let mut ticks = std::collections::VecDeque::with_capacity(keep.min(64));
        let mut dropped = 0u64;
        match self {
            Schedule::Every(d) => {
                let step = (d.as_millis() as u64).max(1);
                let first = after_ms / step + 1;
                let last = until_ms / step;
                if last >= first {
                    let from = first.max(last.saturating_sub(keep as u64 - 1));
                    dropped = from - first;
                    ticks.extend((from..=last).map(|k| k * step));
                }
            }
            Schedule::Cron(_) => {
                const WEEK_MS: u64 = 7 * 24 * 3600 * 1000;
                let mut cursor = after_ms.max(until_ms.saturating_sub(WEEK_MS));
                while let Some(t) = self.next_after(cursor) {
                    if t > until_ms {
                        break;
                    }
                    if ticks.len() == keep {
                        ticks.pop_front();
                        dropped += 1;
                    }
                    ticks.push_back(t);
                    cursor = t;
                }
            }
        }
        if dropped > 0 && missed == MissedTicks::CatchUp {
            tracing::warn!(
                dropped,
                "eventflow: more than {MAX_CATCH_UP} ticks were missed; the oldest are dropped"
            );
        }
        ticks.into()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {d:?}"),
            Schedule::Cron(s) => write!(f, "cron `{s}`"),
        }
    }
}

/// The schedule a `#[scheduled]` function was registered with.
#[derive(Clone, Copy, Debug)]
pub enum ScheduleSpec {
    /// `every = "..."`.
    Every(Duration),
    /// `cron = "..."`.
    Cron(&'static str),
}

/// The entry point `#[scheduled]` generates for an `async fn`.
pub type AsyncScheduledInvoke = fn(ScheduleContext) -> BoxFuture<'static, Result<(), HandlerError>>;
/// The entry point `#[scheduled]` generates for a plain `fn`.
pub type BlockingScheduledInvoke = fn(ScheduleContext) -> Result<(), HandlerError>;

/// How a registered scheduled function is called.
#[derive(Clone, Copy)]
pub enum ScheduledInvoke {
    /// An `async fn`.
    Async(AsyncScheduledInvoke),
    /// A plain `fn`: it runs on a blocking thread.
    Blocking(BlockingScheduledInvoke),
}

/// A function annotated with `#[scheduled]`.
pub struct ScheduledRecord {
    /// Its name (unique on a bus; the Redis lease key uses it).
    pub name: &'static str,
    /// When it runs.
    pub schedule: ScheduleSpec,
    /// What happens to missed ticks.
    pub missed: MissedTicks,
    /// Bound on one run.
    pub timeout: Option<Duration>,
    /// How to call it.
    pub invoke: ScheduledInvoke,
    /// Where it was defined.
    pub location: SourceLocation,
}

inventory::collect!(ScheduledRecord);

type DynAsync =
    dyn Fn(ScheduleContext) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;
type DynBlocking = dyn Fn(ScheduleContext) -> Result<(), HandlerError> + Send + Sync;

#[derive(Clone)]
enum ScheduledFn {
    Async(Arc<DynAsync>),
    Blocking(Arc<DynBlocking>),
}

/// A scheduled function, registered with `#[scheduled]` or built at run time and added
/// with [`EventBusBuilder::scheduled`](crate::EventBusBuilder::scheduled).
///
/// ```
/// use std::time::Duration;
/// use eventflow_runtime::{HandlerError, MissedTicks, Schedule, Scheduled};
/// let cleanup = Scheduled::new(
///     "cleanup",
///     Schedule::every(Duration::from_secs(60)).expect("a valid interval"),
///     |ctx| async move {
///         println!("tick {:?}", ctx.tick());
///         Ok::<(), HandlerError>(())
///     },
/// )
/// .missed(MissedTicks::CatchUp);
/// assert_eq!(cleanup.name(), "cleanup");
/// ```
#[derive(Clone)]
pub struct Scheduled {
    pub(crate) name: Arc<str>,
    pub(crate) schedule: Schedule,
    pub(crate) missed: MissedTicks,
    pub(crate) timeout: Option<Duration>,
    func: ScheduledFn,
    pub(crate) source: String,
}

impl Scheduled {
    /// An async function run on `schedule`.
    #[track_caller]
    pub fn new<F, Fut>(name: impl Into<String>, schedule: Schedule, f: F) -> Self
    where
        F: Fn(ScheduleContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let caller = std::panic::Location::caller();
        Scheduled {
            name: name.into().into(),
            schedule,
            missed: MissedTicks::Skip,
            timeout: None,
            func: ScheduledFn::Async(Arc::new(move |ctx| Box::pin(f(ctx)))),
            source: format!("{}:{}", caller.file(), caller.line()),
        }
    }

    /// From a registry record; fails on an invalid schedule.
    pub(crate) fn from_record(r: &ScheduledRecord) -> Result<Self, String> {
        let schedule = match r.schedule {
            ScheduleSpec::Every(d) => Schedule::every(d),
            ScheduleSpec::Cron(c) => Schedule::cron(c),
        }?;
        Ok(Scheduled {
            name: r.name.into(),
            schedule,
            missed: r.missed,
            timeout: r.timeout,
            func: match r.invoke {
                ScheduledInvoke::Async(f) => ScheduledFn::Async(Arc::new(f)),
                ScheduledInvoke::Blocking(f) => ScheduledFn::Blocking(Arc::new(f)),
            },
            source: format!("{}:{}", r.location.file, r.location.line),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets what happens to missed ticks.
    pub fn missed(mut self, missed: MissedTicks) -> Self {
        self.missed = missed;
        self
    }

    /// Bounds each run; a run past it is cancelled and counted as failed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// What a scheduled function gets: the tick it runs for, and the bus.
#[derive(Clone)]
pub struct ScheduleContext {
    name: Arc<str>,
    tick: SystemTime,
    bus: EventBus,
}

impl ScheduleContext {
    /// The name of the scheduled function.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tick this run is for (a missed tick being caught up is in the past).
    pub fn tick(&self) -> SystemTime {
        self.tick
    }

    /// The bus running the function.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Publishes an event on the bus.
    pub async fn publish<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        self.bus.publish_envelope(Envelope::new(event)).await
    }

    /// [`publish`](Self::publish) from a plain (blocking) scheduled function.
    pub fn publish_blocking<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        self.bus
            .runtime()
            .block_on(self.bus.publish_envelope(Envelope::new(event)))
    }
}

/// What one scheduled function did since the bus started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Its name.
    pub name: String,
    /// Runs that succeeded.
    pub succeeded: u64,
    /// Runs that failed (error, panic or timeout).
    pub failed: u64,
    /// Ticks another worker claimed, so this process did not run them.
    pub claimed_elsewhere: u64,
    /// Ticks not run because the backend could not be asked.
    pub unclaimed: u64,
    /// The last tick this process ran, in milliseconds since the Unix epoch.
    pub last_tick_ms: Option<u64>,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    claimed_elsewhere: AtomicU64,
    unclaimed: AtomicU64,
    last_tick: AtomicU64,
}

/// A bus's scheduled functions and the tasks running them.
pub(crate) struct Schedules {
    entries: Vec<(Scheduled, Counters)>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Schedules {
    pub(crate) fn new(entries: Vec<Scheduled>) -> Self {
        Schedules {
            entries: entries
                .into_iter()
                .map(|s| (s, Counters::default()))
                .collect(),
            stop: CancellationToken::new(),
            tasks: std::sync::Mutex::new(None),
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(s, _)| s.name())
    }

    pub(crate) fn stats(&self) -> Vec<ScheduleStats> {
        self.entries
            .iter()
            .map(|(s, c)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let last = get(&c.last_tick);
                ScheduleStats {
                    name: s.name.to_string(),
                    succeeded: get(&c.succeeded),
                    failed: get(&c.failed),
                    claimed_elsewhere: get(&c.claimed_elsewhere),
                    unclaimed: get(&c.unclaimed),
                    last_tick_ms: (last > 0).then_some(last),
                }
            })
            .collect()
    }

    /// Starts one task per function (once; later calls do nothing).
    pub(crate) fn start(&self, bus: &EventBus) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.is_some() || self.stop.is_cancelled() {
            return;
        }
        let started = (0..self.entries.len())
            .map(|i| tokio::spawn(run_loop(bus.downgrade(), i, self.stop.clone())))
            .collect();
        *tasks = Some(started);
    }

    /// Stops the loops; a run in progress may finish within `timeout`, then is cancelled.
    pub(crate) async fn stop(&self, timeout: Duration) {
        self.stop.cancel();
        let tasks = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + timeout;
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn run_loop(bus: Weak<crate::bus::Inner>, index: usize, stop: CancellationToken) {
    let Some(first) = EventBus::upgrade(&bus) else {
        return;
    };
    let Some((sched, _)) = first.schedules().entries.get(index) else {
        return;
    };
    let (name, schedule, missed) = (sched.name.clone(), sched.schedule.clone(), sched.missed);
    let mut cursor = now_ms();
    if missed == MissedTicks::CatchUp {
        // Ticks missed while no process ran, where the backend remembers them.
        match first.backend().last_tick(&name).await {
            Ok(Some(last)) if last < cursor => cursor = last,
            Ok(_) => {}
            Err(e) => tracing::warn!(schedule = %name, error = %e,
                "eventflow: cannot read the last tick; ticks missed while down are not caught up"),
        }
    }
    drop(first);
    tracing::debug!(schedule = %name, %schedule, "eventflow: scheduled function started");
    loop {
        let Some(next) = schedule.next_after(cursor) else {
            tracing::info!(schedule = %name, "eventflow: the schedule has no more ticks");
            return;
        };
        let wait = Duration::from_millis(next.saturating_sub(now_ms()));
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let now = now_ms();
        if now < next {
            // The timer woke a little before the wall clock reached the tick.
            continue;
        }
        for tick in schedule.due(cursor, now, missed) {
            if stop.is_cancelled() {
                return;
            }
            let Some(bus) = EventBus::upgrade(&bus) else {
                return;
            };
            run_tick(&bus, index, tick).await;
            cursor = tick;
        }
    }
}

async fn run_tick(bus: &EventBus, index: usize, tick: u64) {
    let Some((sched, counters)) = bus.schedules().entries.get(index) else {
        return;
    };
    match bus.backend().claim_tick(&sched.name, tick).await {
        Ok(true) => {}
        Ok(false) => {
            counters.claimed_elsewhere.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(schedule = %sched.name, tick, "eventflow: tick run by another worker");
            return;
        }
        Err(e) => {
            counters.unclaimed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(schedule = %sched.name, tick, error = %e,
                "eventflow: cannot claim the tick; it is not run");
            return;
        }
    }
    let ctx = ScheduleContext {
        name: sched.name.clone(),
        tick: UNIX_EPOCH + Duration::from_millis(tick),
        bus: bus.clone(),
    };
    let span = if bus.telemetry().tracing {
        tracing::debug_span!("eventflow.scheduled", schedule = %sched.name, tick)
    } else {
        tracing::Span::none()
    };
    let result = run_once(sched, ctx).instrument(span).await;
    counters.last_tick.store(tick, Ordering::Relaxed);
    crate::telemetry::scheduled_run(bus.telemetry().metrics, &sched.name, result.is_ok());
    match result {
        Ok(()) => {
            counters.succeeded.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(schedule = %sched.name, tick, error = %e,
                "eventflow: scheduled function failed");
        }
    }
}

async fn run_once(sched: &Scheduled, ctx: ScheduleContext) -> Result<(), HandlerError> {
    let bounded = |fut: BoxFuture<'static, Result<(), HandlerError>>| async move {
        match sched.timeout {
            None => fut.await,
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or_else(|_| Err(HandlerError::timed_out(t))),
        }
    };
    match &sched.func {
        ScheduledFn::Async(f) => {
            let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx))) {
                Ok(fut) => fut,
                Err(p) => return Err(HandlerError::panicked(panic_message(&*p))),
            };
            let caught: BoxFuture<'static, _> = Box::pin(async move {
                match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(r) => r,
                    Err(p) => Err(HandlerError::panicked(panic_message(&*p))),
                }
            });
            bounded(caught).await
        }
        ScheduledFn::Blocking(f) => {
            // On timeout the run is abandoned and counted as failed; the thread finishes.
            let f = f.clone();
            let task = tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx)))
            });
            bounded(Box::pin(async move {
                match task.await {
                    Ok(Ok(r)) => r,
                    Ok(Err(p)) => Err(HandlerError::panicked(panic_message(&*p))),
                    Err(_) => Err(HandlerError::cancelled("the blocking run was cancelled")),
                }
            }))
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ticks_on_multiples_of_the_interval() {
        let s = Schedule::every(Duration::from_secs(30)).expect("valid");
        assert_eq!(s.next_after(0), Some(30_000));
        assert_eq!(s.next_after(29_999), Some(30_000));
        assert_eq!(s.next_after(30_000), Some(60_000));
        assert_eq!(
            s.due(30_000, 125_000, MissedTicks::CatchUp),
            vec![60_000, 90_000, 120_000]
        );
        assert_eq!(s.due(30_000, 125_000, MissedTicks::Skip), vec![120_000]);
        assert!(s.due(30_000, 59_999, MissedTicks::CatchUp).is_empty());
    }

    #[test]
    fn cron_ticks_in_utc() {
        let s = Schedule::cron("0 */5 * * * *").expect("valid");
        // 1970-01-01 00:00:00 → the next five-minute mark.
        assert_eq!(s.next_after(0), Some(300_000));
        assert_eq!(s.next_after(300_000), Some(600_000));
        assert_eq!(
            s.due(0, 900_000, MissedTicks::CatchUp),
            vec![300_000, 600_000, 900_000]
        );
        assert!(Schedule::cron("every five minutes").is_err());
        assert!(Schedule::every(Duration::ZERO).is_err());
    }

    #[test]
    fn catch_up_is_bounded() {
        let s = Schedule::every(Duration::from_millis(1)).expect("valid");
        let due = s.due(0, 5_000, MissedTicks::CatchUp);
        assert_eq!(due.len(), MAX_CATCH_UP);
        assert_eq!(due.last(), Some(&5_000));
        let long = s.due(0, 10_000_000_000, MissedTicks::CatchUp);
        assert_eq!(long.len(), MAX_CATCH_UP);
        assert_eq!(long[0], 10_000_000_000 - MAX_CATCH_UP as u64 + 1);
        assert_eq!(
            s.due(0, 10_000_000_000, MissedTicks::Skip),
            vec![10_000_000_000]
        );
    }
}
