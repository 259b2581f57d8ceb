//! Counters of what the bus did, per handler, and the snapshot [`EventBus::metrics`]
//! returns (earnorm's `get_metrics()`).
//!
//! [`EventBus::metrics`]: crate::EventBus::metrics

use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl HandlerCounters {
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
        }
    }
}

/// What one handler did since the bus started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
}

impl HandlerMetrics {
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
            "{:<28} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>8}",
            "handler", "delivered", "succeeded", "failed", "retried", "dead", "filtered", "success"
        )?;
        for h in &self.handlers {
            writeln!(
                f,
                "{:<28} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>7.1}%",
                h.handler,
                h.delivered,
                h.succeeded,
                h.failed_attempts,
                h.retried,
                h.dead_lettered,
                h.filtered,
                h.success_rate() * 100.0
            )?;
        }
        Ok(())
    }
}
