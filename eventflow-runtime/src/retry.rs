//! Retry policies.
//!
//! `max_attempts` counts the first try: `max_attempts = 3` means one try and two retries.
//! The delay before retry `n` (after the `n`-th attempt failed) is
//!
//! ```text
//! delay(n) = min(max_backoff, backoff_factor * 2^(n-1))   seconds
//! ```
//!
//! so `backoff_factor = 1.0` waits 1, 2, 4, ... seconds. With `jitter`, each delay is drawn
//! uniformly from `[delay/2, delay]`, which spreads retries of many failed events apart.
//!
//! Which errors retry: an error made with [`HandlerError::permanent`], a payload that does
//! not convert to the handler's type, and a cancelled attempt never retry. Every other error
//! (including panics and timeouts) retries when no `retry_on` is given. With
//! `retry_on = [A, B]`, an error retries only when its source chain holds an `A` or a `B`
//! (list [`PanicError`](crate::PanicError) or [`TimeoutError`](crate::TimeoutError) to retry
//! panics or timeouts).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::HandlerError;

/// Decides whether an error is one of the `retry_on` types.
pub type RetryOn = fn(&HandlerError) -> bool;

/// How often and how patiently a failed attempt is tried again.
///
/// Also read from configuration (the `retry_on` list is code, so it is not):
///
/// ```
/// use eventflow_runtime::RetryPolicy;
/// let p: RetryPolicy = serde_json::from_str(
///     r#"{"max_attempts": 5, "backoff_factor": 0.1, "max_backoff": 5.0}"#).unwrap();
/// assert_eq!(p.delay(1).as_millis(), 100);
/// assert_eq!(p.delay(3).as_millis(), 400);
/// assert_eq!(p.delay(10).as_secs(), 5);
/// ```
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. At least 1.
    pub max_attempts: u32,
    /// Seconds; the first retry waits this long, each next one twice as long.
    #[serde(default = "default_backoff_factor")]
    pub backoff_factor: f64,
    /// Seconds; no wait is longer.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: f64,
    /// Draw each delay from `[delay/2, delay]`.
    #[serde(default)]
    pub jitter: bool,
    /// Only errors this accepts are retried; `None` retries every retryable error.
    #[serde(skip)]
    pub retry_on: Option<RetryOn>,
}

fn default_backoff_factor() -> f64 {
    RetryPolicy::DEFAULT.backoff_factor
}

fn default_max_backoff() -> f64 {
    RetryPolicy::DEFAULT.max_backoff
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::NEVER
    }
}

impl RetryPolicy {
    /// One attempt, no retry: what a handler without `retry(...)` gets.
    pub const NEVER: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        backoff_factor: 0.5,
        max_backoff: 60.0,
        jitter: false,
        retry_on: None,
    };

    /// What `retry()` with no arguments means: 3 attempts, 0.5 s factor, 60 s cap.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        ..Self::NEVER
    };

    /// `max_attempts` attempts with the default backoff.
    pub const fn attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            ..Self::DEFAULT
        }
    }

    /// Sets the backoff factor and cap, in seconds.
    pub const fn backoff(mut self, backoff_factor: f64, max_backoff: f64) -> Self {
        self.backoff_factor = backoff_factor;
        self.max_backoff = max_backoff;
        self
    }

    /// Retries only errors `f` accepts.
    pub const fn retry_on(mut self, f: RetryOn) -> Self {
        self.retry_on = Some(f);
        self
    }

    /// Turns jitter on or off.
    pub const fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The delay before retry `n`, that is after attempt `n` failed (`n` starts at 1).
    pub fn delay(&self, n: u32) -> Duration {
        let exp = 2f64.powi(n.saturating_sub(1).min(1023) as i32);
        let secs = (self.backoff_factor * exp).min(self.max_backoff).max(0.0);
        let secs = if self.jitter {
            let r = (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64;
            secs * (0.5 + 0.5 * r)
        } else {
            secs
        };
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Whether an error after attempt `attempt` is retried.
    pub fn should_retry(&self, err: &HandlerError, attempt: u32) -> bool {
        attempt < self.max_attempts && err.is_retryable() && self.retry_on.is_none_or(|f| f(err))
    }

    /// Checks the values; the error says which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1 (it counts the first try)".into());
        }
        if !(self.backoff_factor >= 0.0 && self.backoff_factor.is_finite()) {
            return Err(format!(
                "backoff_factor must be a finite number >= 0, not {}",
                self.backoff_factor
            ));
        }
        if self.max_backoff.is_nan() || self.max_backoff < 0.0 {
            return Err(format!(
                "max_backoff must be >= 0, not {}",
                self.max_backoff
            ));
        }
        Ok(())
    }
}

/// The attempts of one piece of work under a policy: which attempt runs, when the first
/// failed, and after each failure whether to try again and after how long.
///
/// Every retry loop in eventflow counts with this one type (handler deliveries, batches and
/// pipeline steps), so the rule is written once: the next attempt is the policy's to allow,
/// the count saturates instead of overflowing (an attempt read off the network may be
/// `u32::MAX`), and the delay is [`RetryPolicy::delay`].
#[derive(Debug)]
pub(crate) struct Attempts<'p> {
    policy: &'p RetryPolicy,
    attempt: u32,
    first_failed_at: Option<SystemTime>,
}

/// What follows a failed attempt.
#[derive(Debug)]
pub(crate) enum AfterFailure {
    /// Try again after this delay.
    Retry(Duration),
    /// Give up: the policy allows no more attempts, or the error does not retry.
    GiveUp {
        /// When the first attempt failed.
        first_failed_at: SystemTime,
        /// When the last one did.
        last_failed_at: SystemTime,
    },
}

impl<'p> Attempts<'p> {
    /// Counting from `attempt` (an attempt earlier deliveries already made; 0 counts as 1).
    #[inline]
    pub(crate) fn starting_at(policy: &'p RetryPolicy, attempt: u32) -> Self {
        Attempts {
            policy,
            attempt: attempt.max(1),
            first_failed_at: None,
        }
    }

    /// The attempt that runs now, starting at 1.
    #[inline]
    pub(crate) fn current(&self) -> u32 {
        self.attempt
    }

    /// The current attempt failed with `err`: whether to retry, and when.
    pub(crate) fn failed(&mut self, err: &HandlerError) -> AfterFailure {
        let now = SystemTime::now();
        let first_failed_at = *self.first_failed_at.get_or_insert(now);
        if self.policy.should_retry(err, self.attempt) {
            AfterFailure::Retry(self.policy.delay(self.attempt))
        } else {
            AfterFailure::GiveUp {
                first_failed_at,
                last_failed_at: now,
            }
        }
    }

    /// Waits out a retry's delay and moves on to the next attempt.
    pub(crate) async fn back_off(&mut self, delay: Duration) {
        tokio::time::sleep(delay).await;
        self.attempt = self.attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_follows_the_formula() {
        let p = RetryPolicy::attempts(5).backoff(1.0, 10.0);
        let secs: Vec<f64> = (1..=6).map(|n| p.delay(n).as_secs_f64()).collect();
        assert_eq!(secs, vec![1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let p = RetryPolicy::attempts(5).backoff(1.0, 10.0).jitter(true);
        for _ in 0..200 {
            let d = p.delay(3).as_secs_f64();
            assert!((2.0..=4.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_decisions() {
        let p = RetryPolicy::attempts(3);
        let e = HandlerError::msg("flaky");
        assert!(p.should_retry(&e, 1));
        assert!(p.should_retry(&e, 2));
        assert!(!p.should_retry(&e, 3));
        assert!(!p.should_retry(&HandlerError::permanent_msg("no"), 1));

        let only_io = p.retry_on(|e| e.is::<std::io::Error>());
        assert!(!only_io.should_retry(&e, 1));
        assert!(only_io.should_retry(&std::io::Error::other("x").into(), 1));
        assert!(!only_io.should_retry(&HandlerError::permanent(std::io::Error::other("x")), 1));
    }

    #[test]
    fn validation() {
        assert!(RetryPolicy::attempts(0).validate().is_err());
        assert!(
            RetryPolicy::attempts(1)
                .backoff(-1.0, 1.0)
                .validate()
                .is_err()
        );
        assert!(
            RetryPolicy::attempts(1)
                .backoff(f64::NAN, 1.0)
                .validate()
                .is_err()
        );
        assert!(RetryPolicy::DEFAULT.validate().is_ok());
    }

    #[test]
    fn attempts_saturate_and_give_up_at_the_top() {
        let p = RetryPolicy::attempts(u32::MAX).backoff(0.0, 0.0);
        let mut a = Attempts::starting_at(&p, u32::MAX);
        assert_eq!(a.current(), u32::MAX);
        assert!(matches!(
            a.failed(&HandlerError::msg("x")),
            AfterFailure::GiveUp { .. }
        ));
        let p = RetryPolicy::attempts(3).backoff(0.0, 0.0);
        let mut a = Attempts::starting_at(&p, 0);
        assert_eq!(a.current(), 1);
        assert!(matches!(
            a.failed(&HandlerError::msg("x")),
            AfterFailure::Retry(_)
        ));
        assert!(matches!(
            a.failed(&HandlerError::permanent_msg("x")),
            AfterFailure::GiveUp { .. }
        ));
    }
}
