//! Options of one publish (basefunctions' `Event(type, data, mode, priority, timeout,
//! retry_count)`): they travel in the envelope, so a Redis worker honours them too.

use std::time::Duration;

use super::Envelope;

/// Settings for one published event, over those of the handlers that take it.
///
/// | setting | publish option | else the handler's | else the bus's |
/// | --- | --- | --- | --- |
/// | priority (`i32`, higher first: order among deliveries waiting for a worker or a handler's free slot; on Redis the lane, -100 to 100) | [`priority`](Self::priority) | — | 0 |
/// | wait for a request's answer ([`EventBus::request_with`](crate::EventBus::request_with)) | [`timeout`](Self::timeout) | — | [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT) |
/// | bound on one attempt | [`timeout`](Self::timeout) | `timeout = ".."` / `Handler::timeout` | `default_timeout` |
/// | attempts in all | [`max_attempts`](Self::max_attempts) (backoff stays the handler's) | `retry(..)` / `Handler::retry` | `default_retry` |
/// | when it is delivered | [`delay`](Self::delay) | — | at once |
/// | headers | [`header`](Self::header) (over the bus's headers) | — | `EventBusBuilder::header` |
///
/// ```
/// use std::time::Duration;
/// use eventflow_runtime::PublishOptions;
/// let opts = PublishOptions::new()
///     .priority(10)
///     .timeout(Duration::from_secs(60))
///     .max_attempts(3)
///     .header("tenant", "acme");
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Priority of the event.
    pub priority: Option<i32>,
    /// Bound on each attempt.
    pub timeout: Option<Duration>,
    /// Attempts in all (the first included), at least 1.
    pub max_attempts: Option<u32>,
    /// Delivered after this long.
    pub delay: Option<Duration>,
    /// Headers to set.
    pub headers: Vec<(String, String)>,
}

impl PublishOptions {
    /// No option set: the handlers' and the bus's settings apply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Higher runs first among deliveries waiting for a handler.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Bounds each attempt of each handler for this event.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Attempts in all for this event, for each handler (0 counts as 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// Delivers the event after `delay` (kept by the backend until then).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets a header of the event.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Writes the options into `envelope`; returns it and the delay.
    pub fn apply(self, mut envelope: Envelope) -> (Envelope, Option<Duration>) {
        if let Some(p) = self.priority {
            envelope.priority = p;
        }
        if let Some(t) = self.timeout {
            envelope.timeout = Some(t);
        }
        if let Some(n) = self.max_attempts {
            envelope.max_attempts = Some(n);
        }
        for (k, v) in self.headers {
            envelope.headers.insert(k, v);
        }
        (envelope, self.delay)
    }
}
