//! Running scheduled functions on a bus: the registered records, the functions built at
//! run time, their context and statistics, and the loop that claims and runs each tick.
//! The rules are in [`schedule`](crate::schedule).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::EventBus;
use crate::error::{EventError, HandlerError};
use crate::event::Event;
use crate::executor::panic_message;
use crate::schedule::{DeclaredSchedule, MissedTicks, Schedule};
use crate::source::SourceLocation;
use crate::util::BoxFuture;

/// The entry point `#[scheduled]` generates for an `async fn`.
pub(super) type AsyncScheduledInvoke =
    fn(ScheduleContext) -> BoxFuture<'static, Result<(), HandlerError>>;
/// The entry point `#[scheduled]` generates for a plain `fn`.
pub(super) type BlockingScheduledInvoke = fn(ScheduleContext) -> Result<(), HandlerError>;

/// How a registered scheduled function is called.
#[derive(Clone, Copy)]
pub enum ScheduledJobInvoke {
    /// An `async fn`.
    Async(AsyncScheduledInvoke),
    /// A plain `fn`: it runs on a blocking thread.
    Blocking(BlockingScheduledInvoke),
}

/// A function annotated with `#[scheduled]`.
pub struct ScheduledJobRecord {
    /// Its name (unique on a bus; the Redis lease key uses it).
    pub name: &'static str,
    /// When it runs.
    pub schedule: DeclaredSchedule,
    /// What happens to missed ticks.
    pub missed: MissedTicks,
    /// Bound on one run.
    pub timeout: Option<Duration>,
    /// How to call it.
    pub invoke: ScheduledJobInvoke,
    /// Where it was defined.
    pub location: SourceLocation,
}

inventory::collect!(ScheduledJobRecord);

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
/// use eventflow_runtime::{HandlerError, MissedTicks, Schedule, ScheduledJob};
/// let cleanup = ScheduledJob::new(
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
pub struct ScheduledJob {
    pub(crate) name: Arc<str>,
    pub(crate) schedule: Schedule,
    pub(crate) missed: MissedTicks,
    pub(crate) timeout: Option<Duration>,
    func: ScheduledFn,
    pub(crate) source: String,
}

impl ScheduledJob {
    /// An async function run on `schedule`.
    #[track_caller]
    pub fn new<F, Fut>(name: impl Into<String>, schedule: Schedule, f: F) -> Self
    where
        F: Fn(ScheduleContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let caller = std::panic::Location::caller();
        ScheduledJob {
            name: name.into().into(),
            schedule,
            missed: MissedTicks::Skip,
            timeout: None,
            func: ScheduledFn::Async(Arc::new(move |ctx| Box::pin(f(ctx)))),
            source: format!("{}:{}", caller.file(), caller.line()),
        }
    }

    /// From a registry record; fails on an invalid schedule.
    pub(crate) fn from_record(r: &ScheduledJobRecord) -> Result<Self, String> {
        let schedule = match r.schedule {
            DeclaredSchedule::Every(d) => Schedule::every(d),
            DeclaredSchedule::Cron(c) => Schedule::cron(c),
        }?;
        Ok(ScheduledJob {
            name: r.name.into(),
            schedule,
            missed: r.missed,
            timeout: r.timeout,
            func: match r.invoke {
                ScheduledJobInvoke::Async(f) => ScheduledFn::Async(Arc::new(f)),
                ScheduledJobInvoke::Blocking(f) => ScheduledFn::Blocking(Arc::new(f)),
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
        super::context::Publisher::new(&self.bus, None)
            .publish(event)
            .await
    }

    /// [`publish`](Self::publish) from a plain (blocking) scheduled function.
    pub fn publish_blocking<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        super::context::Publisher::new(&self.bus, None).publish_blocking(event)
    }
}

/// What one scheduled function did since the bus started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduledJobStats {
    /// Its name.
    pub name: String,
    /// When it runs, as written (`every 30s`, a cron expression).
    pub schedule: String,
    /// The next tick due after now, in milliseconds since the Unix epoch.
    pub next_tick_ms: Option<u64>,
    /// The last run's error, when the last run failed.
    pub last_error: Option<String>,
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
    last_error: std::sync::Mutex<Option<String>>,
}

/// A bus's scheduled functions and the tasks running them.
pub(crate) struct Scheduler {
    entries: Vec<(ScheduledJob, Counters)>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Scheduler {
    pub(crate) fn new(entries: Vec<ScheduledJob>) -> Self {
        Scheduler {
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

    pub(crate) fn stats(&self) -> Vec<ScheduledJobStats> {
        self.entries
            .iter()
            .map(|(s, c)| {
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let last = get(&c.last_tick);
                let now = crate::util::millis(std::time::SystemTime::now());
                ScheduledJobStats {
                    name: s.name.to_string(),
                    schedule: s.schedule.to_string(),
                    next_tick_ms: s.schedule.next_after(now),
                    last_error: c
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
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
        let mut tasks = crate::util::lock(&self.tasks);
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
        let tasks = crate::util::lock(&self.tasks).take().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + timeout;
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

async fn run_loop(bus: Weak<crate::bus::Inner>, index: usize, stop: CancellationToken) {
    let Some(first) = EventBus::upgrade(&bus) else {
        return;
    };
    let Some((sched, _)) = first.schedules().entries.get(index) else {
        return;
    };
    let (name, schedule, missed) = (sched.name.clone(), sched.schedule.clone(), sched.missed);
    let mut cursor = crate::util::now_ms();
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
        let wait = Duration::from_millis(next.saturating_sub(crate::util::now_ms()));
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let now = crate::util::now_ms();
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
    let result = run_once(sched, ctx, &bus.inner.blocking)
        .instrument(span)
        .await;
    counters.last_tick.store(tick, Ordering::Relaxed);
    crate::telemetry::scheduled_run(bus.telemetry().metrics, &sched.name, result.is_ok());
    match result {
        Ok(()) => {
            counters.succeeded.fetch_add(1, Ordering::Relaxed);
            *counters
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            *counters
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            tracing::error!(schedule = %sched.name, tick, error = %e,
                "eventflow: scheduled function failed");
        }
    }
}

async fn run_once(
    sched: &ScheduledJob,
    ctx: ScheduleContext,
    blocking: &crate::executor::ThreadPool,
) -> Result<(), HandlerError> {
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
            // On the bus's pool for plain functions. On timeout the run is abandoned and
            // counted as failed; the thread finishes it.
            let f = f.clone();
            let pool = blocking.clone();
            bounded(Box::pin(async move {
                match pool.run(move || f(ctx)).await {
                    Ok(r) => r,
                    Err(p) => Err(HandlerError::panicked(p.0)),
                }
            }))
            .await
        }
    }
}

impl std::fmt::Debug for ScheduleContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleContext").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ScheduledJobInvoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledJobInvoke").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ScheduledJobRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledJobRecord").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ScheduledJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledJob").finish_non_exhaustive()
    }
}

/// The former name of [`ScheduledJob`].
#[deprecated(note = "renamed to `ScheduledJob`")]
pub type Scheduled = ScheduledJob;

/// The former name of [`ScheduledJobRecord`].
#[deprecated(note = "renamed to `ScheduledJobRecord`")]
pub type ScheduledRecord = ScheduledJobRecord;

/// The former name of [`ScheduledJobStats`].
#[deprecated(note = "renamed to `ScheduledJobStats`")]
pub type ScheduleStats = ScheduledJobStats;
