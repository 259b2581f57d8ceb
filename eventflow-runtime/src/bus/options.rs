//! A handler's options: what `#[event_handler(...)]` accepts, and `Handler`'s builder
//! methods set.

use std::time::Duration;

use crate::bus::batch::BatchConfig;
use crate::event::Envelope;
use crate::executor::{Executor, ExecutorConfig};
use crate::retry::RetryPolicy;

/// A handler's options: what `#[event_handler(...)]` accepts.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// When and how failed attempts are retried.
    pub retry: RetryPolicy,
    /// Bound on one attempt; the attempt is cancelled past it and counts as a failure.
    pub timeout: Option<Duration>,
    /// Where the handler runs.
    pub executor: Executor,
    /// Settings of the executor's workers.
    pub executor_config: ExecutorConfig,
    /// Among the handlers of one event, higher runs first.
    pub priority: i32,
    /// Deliveries running at once at most; more wait, in event-priority order.
    pub concurrency: Option<usize>,
    /// Events this returns `false` for are not delivered to the handler; they count as
    /// filtered, not failed.
    pub filter: Option<FilterFn>,
    /// Gathers events into batches; see [`batch`](crate::batch).
    pub batch: Option<BatchConfig>,
    /// Whether `retry` was given (by the attribute, [`with_retry`](Self::with_retry) or
    /// [`Handler::retry`]); a handler without one takes the bus's default retry policy.
    pub(crate) retry_given: bool,
    /// The named policy of `retry = NAME`, looked up when the bus is built.
    pub(crate) retry_from: Option<fn() -> RetryPolicy>,
    /// What makes the executor of `executor = custom(path)`, called when the bus is built.
    pub(crate) custom_from: Option<fn() -> crate::executor::CustomExecutor>,
}

/// A handler's filter, as `#[event_handler(filter = ...)]` registers it.
pub type FilterFn = fn(&Envelope) -> bool;

impl HandlerOptions {
    /// The defaults: no retry, no timeout, `Inline`, priority 0, unbounded concurrency.
    pub const DEFAULT: HandlerOptions = HandlerOptions {
        retry: RetryPolicy::NEVER,
        timeout: None,
        executor: Executor::Inline,
        executor_config: ExecutorConfig::new(),
        priority: 0,
        concurrency: None,
        filter: None,
        batch: None,
        retry_given: false,
        retry_from: None,
        custom_from: None,
    };
}

impl HandlerOptions {
    /// With this retry policy.
    pub const fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self.retry_given = true;
        self.retry_from = None;
        self
    }

    /// With this bound on one attempt.
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// On this executor, with these settings of its workers.
    pub fn with_executor(mut self, executor: Executor, config: ExecutorConfig) -> Self {
        self.executor = executor;
        self.executor_config = config;
        self
    }

    /// With this priority among the handlers of one event.
    pub const fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// At most `limit` deliveries at once.
    pub const fn with_concurrency(mut self, limit: usize) -> Self {
        self.concurrency = Some(limit);
        self
    }
}

impl Default for HandlerOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}
