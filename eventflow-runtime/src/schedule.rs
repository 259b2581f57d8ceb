//! Scheduled functions: code that runs on a schedule, `#[scheduled(every = "30s")]` or
//! `#[scheduled(cron = "0 */5 * * * *")]` (basefunctions' `TimerThread`, a thread that calls a
//! function at an interval, here as annotated functions).
//!
//! ## Which type is which
//!
//! | type | is |
//! | --- | --- |
//! | [`Schedule`] | *when*: an interval or a cron expression, with its tick arithmetic |
//! | [`DeclaredSchedule`] | *when*, as the `#[scheduled]` attribute wrote it (the record's form) |
//! | [`ScheduledJob`](crate::ScheduledJob) | a scheduled *function* built at run time, added with [`EventBusBuilder::scheduled`](crate::EventBusBuilder::scheduled) |
//! | [`ScheduledJobRecord`](crate::ScheduledJobRecord) | a scheduled *function* as `#[scheduled]` registered it |
//! | [`ScheduleContext`](crate::ScheduleContext) | what a run gets: its tick and the bus |
//! | [`ScheduledJobStats`](crate::ScheduledJobStats) | what one function did: runs, failures, last tick |
//! | [`MissedTicks`] | what happens to ticks missed while busy or down |
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
//! [`ScheduledJobStats::failed`](crate::ScheduledJobStats::failed)); it is not retried: the next tick is the next try.
use std::str::FromStr;
use std::time::Duration;

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
pub enum DeclaredSchedule {
    /// `every = "..."`.
    Every(Duration),
    /// `cron = "..."`.
    Cron(&'static str),
}

/// The former name of [`DeclaredSchedule`].
#[deprecated(note = "renamed to `DeclaredSchedule`")]
pub type ScheduleSpec = DeclaredSchedule;

/// What a periodic timer does with ticks it missed because the process was busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTicks {
    /// Missed ticks are dropped; the next tick comes on the original schedule.
    #[default]
    Skip,
    /// Missed ticks fire at once, one after another, until the timer has caught up.
    CatchUp,
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
