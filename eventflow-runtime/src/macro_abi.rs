//! What the macros' generated code calls to build the runtime's user-facing types: const
//! constructors, so that those types can gain fields (they are `#[non_exhaustive]`) without
//! breaking a single expansion. Reached only through the versioned private module; not a
//! public API.

use std::borrow::Cow;
use std::time::Duration;

use crate::bus::{BatchConfig, FilterFn, HandlerOptions};
use crate::executor::{CustomExecutor, Executor, ExecutorConfig};
use crate::pipeline::{EvaluationState, StepOptions};
use crate::retry::{RetryOn, RetryPolicy};

/// A retry policy.
pub const fn retry_policy(
    max_attempts: u32,
    backoff_factor: f64,
    max_backoff: f64,
    backoff_step: Option<f64>,
    jitter: bool,
    retry_on: Option<RetryOn>,
) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff_factor,
        max_backoff,
        backoff_step,
        jitter,
        retry_on,
    }
}

/// What an attribute's `retry = NAME` may name: a `RetryPolicy` (a `const`) or a
/// `fn() -> RetryPolicy`.
#[diagnostic::on_unimplemented(
    message = "`retry = ...` names `{Self}`, which is not a retry policy",
    label = "not a `RetryPolicy` or a `fn() -> RetryPolicy`",
    note = "name a `const P: RetryPolicy = RetryPolicy::attempts(3);` or a `fn p() -> RetryPolicy`"
)]
pub trait NamedRetryPolicy {
    /// The policy.
    fn retry_policy(self) -> RetryPolicy;
}

impl NamedRetryPolicy for RetryPolicy {
    fn retry_policy(self) -> RetryPolicy {
        self
    }
}

impl<F: FnOnce() -> RetryPolicy> NamedRetryPolicy for F {
    fn retry_policy(self) -> RetryPolicy {
        self()
    }
}

/// An executor's settings.
pub const fn executor_config(
    max_workers: Option<usize>,
    max_tasks_per_child: Option<usize>,
    thread_name_prefix: Option<&'static str>,
    max_memory: Option<u64>,
    max_cpu_time: Option<Duration>,
) -> ExecutorConfig {
    ExecutorConfig {
        custom: None,
        max_workers,
        max_tasks_per_child,
        max_memory,
        max_cpu_time,
        thread_name_prefix: match thread_name_prefix {
            Some(p) => Some(Cow::Borrowed(p)),
            None => None,
        },
    }
}

/// A batched handler's settings.
pub const fn batch_config(max_size: usize, max_wait: Duration) -> BatchConfig {
    BatchConfig { max_size, max_wait }
}

/// A handler's options.
#[allow(clippy::too_many_arguments)]
pub const fn handler_options(
    retry: Option<RetryPolicy>,
    retry_from: Option<fn() -> RetryPolicy>,
    timeout: Option<Duration>,
    executor: Executor,
    executor_config: ExecutorConfig,
    custom_from: Option<fn() -> CustomExecutor>,
    priority: i32,
    concurrency: Option<usize>,
    filter: Option<FilterFn>,
    batch: Option<BatchConfig>,
) -> HandlerOptions {
    HandlerOptions {
        retry: match retry {
            Some(r) => r,
            None => RetryPolicy::NEVER,
        },
        retry_given: retry.is_some() || retry_from.is_some(),
        retry_from,
        custom_from,
        timeout,
        executor,
        executor_config,
        priority,
        concurrency,
        filter,
        batch,
    }
}

/// A pipeline step's settings.
#[allow(clippy::too_many_arguments)]
pub const fn step_options(
    executor: Executor,
    executor_config: ExecutorConfig,
    retry: RetryPolicy,
    evaluation: EvaluationState,
    stop_on_exception: bool,
    stop_on_success: bool,
    stop_on_error: bool,
    timeout: Option<Duration>,
    gotos: &'static [u32],
) -> StepOptions {
    StepOptions {
        executor,
        executor_config,
        retry,
        evaluation,
        stop_on_exception,
        stop_on_success,
        stop_on_error,
        timeout,
        gotos: Cow::Borrowed(gotos),
    }
}
