//! Counters of what the bus did, per handler, and the snapshot [`EventBus::metrics`]
//! returns (earnorm's `get_metrics()`).
//!
//! [`EventBus::metrics`]: crate::EventBus::metrics

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many recent durations each handler keeps for its percentiles, by default
/// ([`EventBusBuilder::metric_samples`](crate::EventBusBuilder::metric_samples)).
pub const DEFAULT_METRIC_SAMPLES: usize = 1_000;

/// Live counters of one handler (relaxed atomics: cheap, and exact once quiescent).
#[derive(Default)]
pub(crate) struct HandlerCounters {
    pub(crate) delivered: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed_attempts: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) dead_letter_failures: AtomicU64,
    pub(crate) abandoned_attempts: AtomicU64,
    /// The last attempts' durations.
    pub(crate) durations: Samples,
    /// The last events' times from publish to their first attempt.
    pub(crate) waits: Samples,
    /// Events delivered, per second of the last minute.
    pub(crate) rate: Rate,
}

/// The last `n` durations, in a ring written without a lock (a sample being replaced
/// while a snapshot reads it is read either way).
#[derive(Default)]
pub(crate) struct Samples {
    slots: Box<[AtomicU64]>,
    written: AtomicU64,
}

impl Samples {
    pub(crate) fn new(n: usize) -> Self {
        Samples {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            written: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.written.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // `i % len` is below `len`, which is a `usize`.
        self.slots[(i % self.slots.len() as u64) as usize].store(nanos, Ordering::Relaxed);
    }

    /// The percentiles of the samples kept, or `None` before the first.
    pub(crate) fn latency(&self) -> Option<Latency> {
        let written = self.written.load(Ordering::Relaxed);
        let kept = usize::try_from(written)
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        if kept == 0 {
            return None;
        }
        let mut v: Vec<u64> = self.slots[..kept]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect();
        v.sort_unstable();
        // The nearest-rank percentile.
        let at = |p: usize| Duration::from_nanos(v[(kept * p).div_ceil(100).clamp(1, kept) - 1]);
        Some(Latency {
            samples: kept,
            p50: at(50),
            p95: at(95),
            p99: at(99),
        })
    }
}

/// Counts per second over the last minute: 60 buckets, each stamped with its second
/// (approximate at a bucket's turn of the second, when two writers may race).
pub(crate) struct Rate {
    counts: [AtomicU64; 60],
    seconds: [AtomicU64; 60],
}

impl Default for Rate {
    fn default() -> Self {
        Rate {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            seconds: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Rate {
    /// Counts one at second `now` (of the bus's clock).
    pub(crate) fn tick(&self, now: u64) {
        let b = (now % 60) as usize;
        if self.seconds[b].load(Ordering::Relaxed) != now {
            self.seconds[b].store(now, Ordering::Relaxed);
            self.counts[b].store(0, Ordering::Relaxed);
        }
        self.counts[b].fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted in the 60 seconds up to `now`.
    pub(crate) fn last_minute(&self, now: u64) -> u64 {
        (0..60)
            .filter(|&b| now.saturating_sub(self.seconds[b].load(Ordering::Relaxed)) < 60)
            .map(|b| self.counts[b].load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add)
    }
}

impl HandlerCounters {
    /// Counters keeping `samples` durations of each kind.
    pub(crate) fn new(samples: usize) -> Self {
        HandlerCounters {
            durations: Samples::new(samples),
            waits: Samples::new(samples),
            ..Default::default()
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, handler: &str) -> HandlerMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandlerMetrics {
            handler: handler.to_owned(),
            delivered: get(&self.delivered),
            succeeded: get(&self.succeeded),
            failed_attempts: get(&self.failed_attempts),
            retried: get(&self.retried),
            dead_lettered: get(&self.dead_lettered),
            filtered: get(&self.filtered),
            dead_letter_failures: get(&self.dead_letter_failures),
            abandoned_attempts: get(&self.abandoned_attempts),
            attempt_duration: self.durations.latency(),
            publish_to_handle: self.waits.latency(),
            events_last_minute: self.rate.last_minute(super::clock_seconds()),
        }
    }
}

/// Percentiles of recent durations (nearest rank).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Durations the percentiles are taken over (at most the bus's `metric_samples`).
    pub samples: usize,
    /// Half were at most this long.
    pub p50: Duration,
    /// 95 in 100 were at most this long.
    pub p95: Duration,
    /// 99 in 100 were at most this long.
    pub p99: Duration,
}

/// What one handler did since the bus started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerMetrics {
    /// The handler's name.
    pub handler: String,
    /// Events delivered to it (each counted once, whatever its attempts).
    pub delivered: u64,
    /// Events it handled successfully.
    pub succeeded: u64,
    /// Attempts that failed (an event retried twice counts up to three).
    pub failed_attempts: u64,
    /// Retries started or scheduled.
    pub retried: u64,
    /// Events it gave up on (sent to dead letters).
    pub dead_lettered: u64,
    /// Events its filter rejected.
    pub filtered: u64,
    /// Times it gave up on an event but the dead letter could not be stored (the event
    /// was not acknowledged: a network backend delivers it again; an in-process delivery
    /// reports [`OutcomeStatus::DeadLetterNotStored`](crate::OutcomeStatus::DeadLetterNotStored)).
    pub dead_letter_failures: u64,
    /// Attempts of a plain `fn` that ran past their timeout: failed, while the function
    /// runs on to its end on its thread (a thread cannot be stopped).
    pub abandoned_attempts: u64,
    /// Durations of its last attempts (earnorm's `max_samples` of them), when metrics are
    /// on and it ran at least once.
    pub attempt_duration: Option<Latency>,
    /// Times from publish to the first attempt of its last events, likewise.
    pub publish_to_handle: Option<Latency>,
    /// Events delivered to it in the last 60 seconds (when metrics are on).
    pub events_last_minute: u64,
}

impl HandlerMetrics {
    /// Events per second over the last minute.
    pub fn events_per_second(&self) -> f64 {
        self.events_last_minute as f64 / 60.0
    }

    /// Succeeded events over settled ones (succeeded + dead-lettered); 1.0 when none.
    pub fn success_rate(&self) -> f64 {
        let settled = self.succeeded + self.dead_lettered;
        if settled == 0 {
            1.0
        } else {
            self.succeeded as f64 / settled as f64
        }
    }
}

/// A snapshot of the bus's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Events accepted by `publish`/`dispatch` on this bus.
    pub published: u64,
    /// Events being delivered right now.
    pub in_flight: u64,
    /// Per handler, in handler order.
    pub handlers: Vec<HandlerMetrics>,
    /// Threads of the bus's pool for plain functions busy now (abandoned attempts that
    /// still run included), and the most it runs at once.
    pub blocking_threads: (usize, usize),
}

impl MetricsSnapshot {
    /// Succeeded over settled deliveries, across handlers; 1.0 when none.
    pub fn success_rate(&self) -> f64 {
        let (ok, dead) = self
            .handlers
            .iter()
            .fold((0, 0), |(a, b), h| (a + h.succeeded, b + h.dead_lettered));
        if ok + dead == 0 {
            1.0
        } else {
            ok as f64 / (ok + dead) as f64
        }
    }

    /// The figures of one handler.
    pub fn handler(&self, name: &str) -> Option<&HandlerMetrics> {
        self.handlers.iter().find(|h| h.handler == name)
    }
}

/// A report for people (earnorm's `get_report()`): totals, then one line per handler.
impl std::fmt::Display for MetricsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "published {}, in flight {}, success rate {:.1}%",
            self.published,
            self.in_flight,
            self.success_rate() * 100.0
        )?;
        writeln!(
            f,
            "{:<28} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "handler",
            "delivered",
            "succeeded",
            "failed",
            "retried",
            "dead",
            "filtered",
            "success",
            "ev/s",
            "run p50",
            "run p99",
            "wait p50",
            "wait p99"
        )?;
        let ms = |l: Option<Latency>, p99: bool| match l {
            Some(l) => format!(
                "{:.2}ms",
                (if p99 { l.p99 } else { l.p50 }).as_secs_f64() * 1e3
            ),
            None => "-".into(),
        };
        for h in &self.handlers {
            writeln!(
                f,
                "{:<28} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>7.1}% {:>7.1} {:>9} {:>9} {:>9} {:>9}",
                h.handler,
                h.delivered,
                h.succeeded,
                h.failed_attempts,
                h.retried,
                h.dead_lettered,
                h.filtered,
                h.success_rate() * 100.0,
                h.events_per_second(),
                ms(h.attempt_duration, false),
                ms(h.attempt_duration, true),
                ms(h.publish_to_handle, false),
                ms(h.publish_to_handle, true),
            )?;
        }
        Ok(())
    }
}
