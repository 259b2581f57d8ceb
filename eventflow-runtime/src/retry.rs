//! Retry policies.
//!
//! `max_attempts` counts the first try: `max_attempts = 3` means one try and two retries.
//! The delay before retry `n` (after the `n`-th attempt failed) grows exponentially
//! (the default) or linearly (when `backoff_step` is set, [`RetryPolicy::linear`]):
//!
//! ```text
//! exponential: delay(n) = min(max_backoff, backoff_factor * 2^(n-1))                 seconds
//! linear:      delay(n) = min(max_backoff, backoff_factor + backoff_step * (n-1))    seconds
//! ```
//!
//! so `backoff_factor = 1.0` waits 1, 2, 4, ... seconds, and `linear(.., 1.0, 2.0, ..)`
//! waits 1, 3, 5, ... seconds. The linear form is Kombu's (earnorm's `interval_start`,
//! `interval_step`, `interval_max`; configuration accepts those names, and Kombu's
//! `max_retries = N` is `max_attempts = N + 1`). With `jitter`, each delay is drawn
//! uniformly from `[delay/2, delay]`, which spreads retries of many failed events apart.
//!
//! One policy can be shared by many handlers and pipeline events: name a `const` or a
//! `fn() -> RetryPolicy` in the attribute, `#[event_handler("x", retry = SHARED)]`.
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
///
/// Kombu's names are accepted too, and a key it does not know is an error:
///
/// ```
/// use eventflow_runtime::RetryPolicy;
/// let p: RetryPolicy = serde_json::from_str(
///     r#"{"max_attempts": 4, "interval_start": 1.0, "interval_step": 2.0, "interval_max": 4.0}"#,
/// ).unwrap();
/// assert_eq!(p.delay(1).as_secs(), 1);
/// assert_eq!(p.delay(2).as_secs(), 3);
/// assert_eq!(p.delay(3).as_secs(), 4);
/// assert!(serde_json::from_str::<RetryPolicy>(r#"{"max_attempts": 2, "backoff": 1}"#).is_err());
/// ```
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included. At least 1.
    pub max_attempts: u32,
    /// Seconds; the first retry waits this long. Exponential backoff doubles it for each
    /// next retry; linear backoff adds `backoff_step`.
    #[serde(default = "default_backoff_factor", alias = "interval_start")]
    pub backoff_factor: f64,
    /// Seconds; no wait is longer.
    #[serde(default = "default_max_backoff", alias = "interval_max")]
    pub max_backoff: f64,
    /// Seconds added to the wait for each next retry: linear backoff. `None` (the default)
    /// doubles it instead.
    #[serde(
        default,
        alias = "interval_step",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff_step: Option<f64>,
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
        backoff_step: None,
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

    /// `max_attempts` attempts with linear backoff: the first retry waits `start`
    /// seconds, each next one `step` seconds longer, none longer than `max` (Kombu's
    /// `interval_start`, `interval_step`, `interval_max`).
    ///
    /// ```
    /// use eventflow_runtime::RetryPolicy;
    /// let p = RetryPolicy::linear(5, 0.5, 0.25, 1.0);
    /// let waits: Vec<u128> = (1..5).map(|n| p.delay(n).as_millis()).collect();
    /// assert_eq!(waits, [500, 750, 1000, 1000]);
    /// ```
    pub const fn linear(max_attempts: u32, start: f64, step: f64, max: f64) -> Self {
        RetryPolicy {
            max_attempts,
            backoff_factor: start,
            max_backoff: max,
            backoff_step: Some(step),
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
        let before = n.saturating_sub(1);
        let grown = match self.backoff_step {
            Some(step) => self.backoff_factor + step * f64::from(before),
            None => self.backoff_factor * 2f64.powi(before.min(1023) as i32),
        };
        let secs = grown.min(self.max_backoff).max(0.0);
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
        if let Some(step) = self.backoff_step
            && !(step >= 0.0 && step.is_finite())
        {
            return Err(format!(
                "backoff_step must be a finite number >= 0, not {step}"
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
