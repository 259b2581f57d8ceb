//! Steps of pipelines: what a step returns, the context it runs in, and its settings.

use std::future::Future;
use std::time::Duration;

use crate::error::HandlerError;
use crate::executor::{Executor, ExecutorConfig};
use crate::retry::RetryPolicy;

mod context;
mod def;
mod erased;

pub use context::ExecutionContext;
pub(crate) use context::*;
pub use def::{PipelineEvent, StepDef, StepRecord, registered};
pub(crate) use erased::*;

/// The error a step raised: volnux's exception. Any `std::error::Error` converts, so `?`
/// works in `process`; [`RetryPolicy::retry_on`] looks at its type.
pub type StepError = HandlerError;

/// How a step ended, short of an error: volnux's `(True, result)` / `(False, message)`.
#[derive(Debug)]
pub enum Done<T> {
    /// Succeeded with a value, passed to the next step.
    Success(T),
    /// Failed with a message (not an exception: not retried).
    Failure(String),
    /// Left by [`ExecutionContext::goto`].
    Goto,
}

/// What `process` returns: `Outcome::success(v)`, `Outcome::failure("why")`, or `Err(e)`
/// (an exception). `Outcome::success` and `Outcome::failure` come from [`OutcomeExt`].
pub type Outcome<T> = Result<Done<T>, StepError>;

/// `Outcome::success(..)` and `Outcome::failure(..)`.
pub trait OutcomeExt<T> {
    /// A success carrying `value`.
    fn success(value: T) -> Self;
    /// A failure with a message.
    fn failure(message: impl std::fmt::Display) -> Self;
}

impl<T> OutcomeExt<T> for Outcome<T> {
    fn success(value: T) -> Self {
        Ok(Done::Success(value))
    }
    fn failure(message: impl std::fmt::Display) -> Self {
        Ok(Done::Failure(message.to_string()))
    }
}

/// Whether to skip a step ([`Process::can_bypass`]): volnux's `can_bypass_current_event`.
///
/// `T` is the step's output type, so the data passed on in the step's place has the type
/// the next step takes (a mistake is a compile error). A step whose input and output are
/// the same type passes its input on with [`Bypass::skip`]`(input.clone(), ..)`.
pub enum Bypass<T> {
    /// Run the step.
    No,
    /// Skip it; `data` goes to the next step as this step's output, `reason` to the trace.
    Skip {
        /// The step's output in its place.
        data: T,
        /// Why.
        reason: String,
    },
}

impl<T> Bypass<T> {
    /// Skips the step, passing `data` on.
    pub fn skip(data: impl Into<T>, reason: impl Into<String>) -> Self {
        Bypass::Skip {
            data: data.into(),
            reason: reason.into(),
        }
    }
}

/// A class-based pipeline event: `#[derive(Event)]` with `#[event(...)]` and this trait.
///
/// ```
/// use eventflow_runtime::pipeline::{ExecutionContext, Outcome, OutcomeExt, Process};
/// #[derive(Default)]
/// struct Double;
/// impl Process for Double {
///     type Input = u32;
///     type Output = u32;
///     async fn process(&self, _ctx: &mut ExecutionContext, n: u32) -> Outcome<u32> {
///         Outcome::success(n * 2)
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a pipeline event but does not implement `Process`",
    label = "needs `impl Process for {Self}`",
    note = "write `impl Process for {Self} {{type Input = ..; type Output = ..; async fn process(&self, ctx: &mut ExecutionContext, input: Self::Input) -> Outcome<Self::Output> {{.. }} }}`"
)]
pub trait Process: Send + Sync + 'static {
    /// What the step takes.
    type Input: Clone + Send + Sync + 'static;
    /// What it passes on.
    type Output: Send + Sync + 'static;
    /// Runs the step.
    fn process(
        &self,
        ctx: &mut ExecutionContext,
        input: Self::Input,
    ) -> impl Future<Output = Outcome<Self::Output>> + Send;
    /// Consulted before the step runs, with the input it would take.
    fn can_bypass(&self, _ctx: &ExecutionContext, _input: &Self::Input) -> Bypass<Self::Output> {
        Bypass::No
    }
}

/// How a step with several tasks (a parallel group, or `for_each`) decides its success:
/// volnux's `EventExecutionEvaluationState`: how a step of several tasks decides whether it succeeded.
///
/// | state | succeeds when | with zero tasks | on the first failed task |
/// | --- | --- | --- | --- |
/// | `SuccessOnAllEventsSuccess` (default) | every task succeeded | success | the others run on |
/// | `FailureForPartialError` | no task failed | success | fails at once; the others are cancelled |
/// | `SuccessForPartialSuccess` | at least one task succeeded | failure | the others run on |
/// | `FailureForAllEventsFailure` | not every task failed | success | the others run on |
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum EvaluationState {
    /// Success only if all tasks succeed.
    #[default]
    SuccessOnAllEventsSuccess,
    /// Failure as soon as any task fails.
    FailureForPartialError,
    /// Success if at least one task succeeds.
    SuccessForPartialSuccess,
    /// Failure only if all tasks fail.
    FailureForAllEventsFailure,
}

impl EvaluationState {
    /// The verdict on `ok` successes out of `total` tasks.
    pub fn decide(self, ok: usize, total: usize) -> bool {
        let failed = total - ok.min(total);
        match self {
            EvaluationState::SuccessOnAllEventsSuccess
            | EvaluationState::FailureForPartialError => failed == 0,
            EvaluationState::SuccessForPartialSuccess => ok > 0,
            EvaluationState::FailureForAllEventsFailure => total == 0 || failed < total,
        }
    }
}

/// A step's settings: `#[event(...)]`, or set per pipeline step. Also read from
/// configuration, with the keys of its fields (`timeout` as `"30s"`); keys left out take
/// [`StepOptions::DEFAULT`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StepOptions {
    /// Where the step runs.
    pub executor: Executor,
    /// Its pool's settings.
    pub executor_config: ExecutorConfig,
    /// Retries of exceptions.
    pub retry: RetryPolicy,
    /// How a step of several tasks decides.
    pub evaluation: EvaluationState,
    /// Stop the pipeline after this step if it raised.
    pub stop_on_exception: bool,
    /// Stop the pipeline after this step if it succeeded.
    pub stop_on_success: bool,
    /// Stop the pipeline after this step if it failed.
    pub stop_on_error: bool,
    /// Bound on one attempt.
    #[serde(with = "crate::config::duration::option")]
    pub timeout: Option<Duration>,
    /// The descriptors the step may `goto` (`#[event(goto = [3, 5])]`). When given, a
    /// pipeline must have a branch for each, and may have no other goto branch on the step:
    /// both are build errors. Empty: not checked.
    pub gotos: std::borrow::Cow<'static, [u32]>,
}

impl StepOptions {
    /// The defaults: `Inline`, no retry, all-success, no stop condition.
    pub const DEFAULT: StepOptions = StepOptions {
        executor: Executor::Inline,
        executor_config: ExecutorConfig::new(),
        retry: RetryPolicy::NEVER,
        evaluation: EvaluationState::SuccessOnAllEventsSuccess,
        stop_on_exception: false,
        stop_on_success: false,
        stop_on_error: false,
        timeout: None,
        gotos: std::borrow::Cow::Borrowed(&[]),
    };
}

impl Default for StepOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl<T> std::fmt::Debug for Bypass<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bypass").finish_non_exhaustive()
    }
}
