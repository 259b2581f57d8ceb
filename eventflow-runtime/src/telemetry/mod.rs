//! Metrics through the [`metrics`] facade, and the ids of the trace context.
//!
//! The bus reports to whatever recorder the program installs (Prometheus, StatsD, ...,
//! see the `metrics` crate). Install it before building the bus: the bus registers its
//! handles when it first sees a handler and event name. Without a recorder every handle is
//! a no-op. [`EventBusBuilder::metrics(false)`](crate::EventBusBuilder::metrics) turns
//! reporting off; [`EventBus::metrics`](crate::EventBus::metrics) works either way.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | `eventflow_events_published_total` | counter | `event` | events accepted by publish or dispatch |
//! | `eventflow_events_delivered_total` | counter | `handler`, `event` | events given to a handler (once, whatever its attempts) |
//! | `eventflow_events_succeeded_total` | counter | `handler`, `event` | events a handler handled |
//! | `eventflow_attempts_failed_total` | counter | `handler`, `event` | failed attempts |
//! | `eventflow_retries_total` | counter | `handler`, `event` | retries started or scheduled |
//! | `eventflow_events_dead_lettered_total` | counter | `handler`, `event` | events a handler gave up on |
//! | `eventflow_events_filtered_total` | counter | `handler`, `event` | events a handler's filter rejected |
//! | `eventflow_events_in_flight` | gauge | | events being delivered |
//! | `eventflow_handler_duration_seconds` | histogram | `handler`, `event` | one attempt, start to end |
//! | `eventflow_publish_to_handle_seconds` | histogram | `handler`, `event` | publish to the first attempt's start |
//! | `eventflow_batch_size` | histogram | `handler` | events in each batch a batched handler ran |
//! | `eventflow_scheduled_runs_total` | counter | `schedule`, `outcome` | runs of scheduled functions (`ok`, `failed`) |
//!
//! A batched handler counts each event of a batch as delivered and then succeeded or
//! dead-lettered; its attempts and retries count once per batch.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Label};

use crate::event::EventName;
use crate::util::FirstKey;
pub(crate) use stats::HandlerCounters;

mod stats;

pub use stats::{DEFAULT_METRIC_SAMPLES, HandlerMetrics, Latency, MetricsSnapshot};

/// The metric names, for dashboards and tests.
pub mod names {
    /// Events accepted by publish or dispatch.
    pub const PUBLISHED: &str = "eventflow_events_published_total";
    /// Events given to a handler.
    pub const DELIVERED: &str = "eventflow_events_delivered_total";
    /// Events a handler handled.
    pub const SUCCEEDED: &str = "eventflow_events_succeeded_total";
    /// Failed attempts.
    pub const FAILED_ATTEMPTS: &str = "eventflow_attempts_failed_total";
    /// Retries started or scheduled.
    pub const RETRIED: &str = "eventflow_retries_total";
    /// Events a handler gave up on.
    pub const DEAD_LETTERED: &str = "eventflow_events_dead_lettered_total";
    /// Events a handler's filter rejected.
    pub const FILTERED: &str = "eventflow_events_filtered_total";
    /// Events being delivered.
    pub const IN_FLIGHT: &str = "eventflow_events_in_flight";
    /// One attempt's duration, in seconds.
    pub const HANDLER_DURATION: &str = "eventflow_handler_duration_seconds";
    /// From publish to the first attempt's start, in seconds.
    pub const PUBLISH_TO_HANDLE: &str = "eventflow_publish_to_handle_seconds";
    /// Events per batch of a batched handler.
    pub const BATCH_SIZE: &str = "eventflow_batch_size";
    /// Runs of scheduled functions.
    pub const SCHEDULED_RUNS: &str = "eventflow_scheduled_runs_total";
}

type Map<V> = HashMap<EventName, V, foldhash::fast::RandomState>;

/// A bus's telemetry switches and its handles that are not per handler.
pub(crate) struct Telemetry {
    pub(crate) metrics: bool,
    pub(crate) tracing: bool,
    /// The counter of the first event name published, found without the map's lock.
    first_published: FirstKey<EventName, Counter>,
    published: RwLock<Map<Counter>>,
    pub(crate) in_flight: Gauge,
}

impl Telemetry {
    pub(crate) fn new(metrics: bool, tracing: bool) -> Self {
        if metrics {
            describe();
        }
        Telemetry {
            metrics,
            tracing,
            first_published: FirstKey::default(),
            published: RwLock::new(Map::default()),
            in_flight: if metrics {
                metrics::gauge!(names::IN_FLIGHT)
            } else {
                Gauge::noop()
            },
        }
    }

    /// Counts a published event.
    pub(crate) fn published(&self, event: &EventName) {
        if !self.metrics {
            return;
        }
        let make = || metrics::counter!(names::PUBLISHED, "event" => event.to_string());
        match self.first_published.get(event, || (event.clone(), make())) {
            Some(counter) => counter.increment(1),
            None => cached(&self.published, event, make).increment(1),
        }
    }
}

/// Looks `event` up in `map`, registering its handle on first sight.
fn cached<V: Clone>(map: &RwLock<Map<V>>, event: &EventName, make: impl FnOnce() -> V) -> V {
    // The maps only grow by whole entries, so a poisoned lock still holds valid data.
    if let Some(v) = map
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(event.as_str())
    {
        return v.clone();
    }
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(event.clone())
        .or_insert_with(make)
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::PUBLISHED, "Events accepted by publish or dispatch");
    describe_counter!(names::DELIVERED, "Events given to a handler");
    describe_counter!(names::SUCCEEDED, "Events a handler handled");
    describe_counter!(names::FAILED_ATTEMPTS, "Failed handler attempts");
    describe_counter!(names::RETRIED, "Retries started or scheduled");
    describe_counter!(names::DEAD_LETTERED, "Events a handler gave up on");
    describe_counter!(names::FILTERED, "Events a handler's filter rejected");
    describe_gauge!(names::IN_FLIGHT, "Events being delivered");
    describe_histogram!(
        names::HANDLER_DURATION,
        Unit::Seconds,
        "One handler attempt"
    );
    describe_histogram!(
        names::PUBLISH_TO_HANDLE,
        Unit::Seconds,
        "From publish to the first attempt's start"
    );
    describe_histogram!(names::BATCH_SIZE, "Events per batch of a batched handler");
    describe_counter!(names::SCHEDULED_RUNS, "Runs of scheduled functions");
}

/// One handler's metric handles for one event name.
pub(crate) struct HandlerHandles {
    delivered: Counter,
    succeeded: Counter,
    failed_attempts: Counter,
    retried: Counter,
    dead_lettered: Counter,
    filtered: Counter,
    duration: Histogram,
    lag: Histogram,
}

impl HandlerHandles {
    fn new(handler: &Arc<str>, event: &EventName) -> Self {
        let labels = vec![
            Label::new("handler", handler.to_string()),
            Label::new("event", event.to_string()),
        ];
        HandlerHandles {
            delivered: metrics::counter!(names::DELIVERED, labels.iter()),
            succeeded: metrics::counter!(names::SUCCEEDED, labels.iter()),
            failed_attempts: metrics::counter!(names::FAILED_ATTEMPTS, labels.iter()),
            retried: metrics::counter!(names::RETRIED, labels.iter()),
            dead_lettered: metrics::counter!(names::DEAD_LETTERED, labels.iter()),
            filtered: metrics::counter!(names::FILTERED, labels.iter()),
            duration: metrics::histogram!(names::HANDLER_DURATION, labels.iter()),
            lag: metrics::histogram!(names::PUBLISH_TO_HANDLE, labels),
        }
    }
}

/// A handler's handles, per event name, registered on first sight.
pub(crate) struct SlotMetrics {
    handler: Arc<str>,
    /// The handles of the first event name delivered, found without the map's lock:
    /// most handlers take one event.
    first: FirstKey<EventName, HandlerHandles>,
    by_event: RwLock<Map<Arc<HandlerHandles>>>,
    batch_size: Histogram,
}

impl SlotMetrics {
    pub(crate) fn new(handler: Arc<str>) -> Self {
        SlotMetrics {
            batch_size: metrics::histogram!(names::BATCH_SIZE, "handler" => handler.to_string()),
            handler,
            first: FirstKey::default(),
            by_event: RwLock::new(Map::default()),
        }
    }

    fn handles(&self, event: &EventName) -> Handles<'_> {
        let first = || (event.clone(), HandlerHandles::new(&self.handler, event));
        if let Some(handles) = self.first.get(event, first) {
            return Handles::First(handles);
        }
        Handles::Other(cached(&self.by_event, event, || {
            Arc::new(HandlerHandles::new(&self.handler, event))
        }))
    }

    pub(crate) fn batch_size(&self, n: usize) {
        self.batch_size.record(n as f64);
    }
}

/// What one delivery to one handler counts: the bus's own counters and, when metrics are
/// on, the facade's.
pub(crate) struct Tally<'a> {
    counters: &'a HandlerCounters,
    handles: Option<Handles<'a>>,
}

/// A handler's handles for one event name: borrowed for its first name, shared otherwise.
enum Handles<'a> {
    First(&'a HandlerHandles),
    Other(Arc<HandlerHandles>),
}

impl std::ops::Deref for Handles<'_> {
    type Target = HandlerHandles;

    fn deref(&self) -> &HandlerHandles {
        match self {
            Handles::First(h) => h,
            Handles::Other(h) => h,
        }
    }
}

macro_rules! tally_counts {
    ($($name:ident),* $(,)?) => {$(
        pub(crate) fn $name(&self) {
            HandlerCounters::bump(&self.counters.$name);
            if let Some(h) = &self.handles {
                h.$name.increment(1);
            }
        }
    )*};
}

impl<'a> Tally<'a> {
    pub(crate) fn new(
        counters: &'a HandlerCounters,
        metrics: Option<&'a SlotMetrics>,
        event: &EventName,
    ) -> Self {
        Tally {
            counters,
            handles: metrics.map(|m| m.handles(event)),
        }
    }

    tally_counts!(
        delivered,
        succeeded,
        failed_attempts,
        retried,
        dead_lettered,
        filtered
    );

    /// A dead letter that could not be stored (the bus's counter only).
    pub(crate) fn dead_letter_failed(&self) {
        HandlerCounters::bump(&self.counters.dead_letter_failures);
    }

    /// Whether durations are measured.
    pub(crate) fn timed(&self) -> bool {
        self.handles.is_some()
    }

    pub(crate) fn attempt_took(&self, d: Duration) {
        if let Some(h) = &self.handles {
            h.duration.record(d.as_secs_f64());
            self.counters.durations.record(d);
        }
    }

    /// An event's time from publish to its first attempt, which starts at `now` (also
    /// counted in the rate).
    pub(crate) fn waited(&self, d: Duration, now: quanta::Instant) {
        if let Some(h) = &self.handles {
            h.lag.record(d.as_secs_f64());
            self.counters.waits.record(d);
            self.counters.rate.tick(clock_seconds_at(now));
        }
    }
}

/// Whole seconds on the bus's clock (since the clock was first read in this process).
pub(crate) fn clock_seconds() -> u64 {
    clock_seconds_at(crate::util::clock().now())
}

/// [`clock_seconds`] at `now`, an instant read on the bus's clock.
pub(crate) fn clock_seconds_at(now: quanta::Instant) -> u64 {
    static START: OnceLock<quanta::Instant> = OnceLock::new();
    let start = *START.get_or_init(|| crate::util::clock().now());
    now.saturating_duration_since(start).as_secs()
}

/// Counts a run of a scheduled function.
pub(crate) fn scheduled_run(enabled: bool, schedule: &str, ok: bool) {
    if enabled {
        metrics::counter!(
            names::SCHEDULED_RUNS,
            "schedule" => schedule.to_owned(),
            "outcome" => if ok {"ok" } else {"failed" },
        )
        .increment(1);
    }
}
