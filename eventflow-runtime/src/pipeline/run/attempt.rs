//! One task of a step: its attempts with retries, on the step's executor.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::error::HandlerError;
use crate::executor::{AbortOnDrop, Executor, panic_message};
use crate::retry::{AfterFailure, Attempts};

use super::*;
use crate::pipeline::datum::{Datum, Input};
use crate::pipeline::step::{self, Attempt};
use crate::pipeline::{ExecutionContext, StepDef, StepError};

/// One task of a step: its first attempt, then retries on exceptions. (The retries are a
/// boxed future of their own, so that a run of steps that succeed carries no timer.)
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_task(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    ctxs: &mut Contexts,
    rec: &TraceWriter<'_>,
    started: u64,
    trace: &mut Trace,
) -> TaskResult {
    let ctx = start_attempt(ids, 1, ctxs, rec, started, trace);
    let (outcome, ctx) = attempt_once(step, data, ctx).await;
    if let Some(ctx) = ctx {
        ctxs.give_back(ctx);
    }
    match task_result(outcome) {
        Ok(r) => r,
        Err(e) => Box::pin(retry_task(step, ids, data, ctxs, rec, trace, e)).await,
    }
}

/// Records an attempt's start and gives it its context.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_attempt(
    (node, member): (u32, u32),
    attempt: u32,
    ctxs: &mut Contexts,
    rec: &TraceWriter<'_>,
    at: u64,
    trace: &mut Trace,
) -> ExecutionContext {
    rec.emit_at(
        trace,
        at,
        Ev::StepStarted {
            node,
            member,
            attempt,
        },
    );
    ctxs.lend(rec.inner, (node, member), attempt)
}

/// What an attempt makes of the task, or the exception it raised.
pub(crate) fn task_result(outcome: Attempt) -> Result<TaskResult, StepError> {
    match outcome {
        Attempt::Success(v) => Ok((StepStatus::Succeeded, Some(v), None)),
        Attempt::Failure(m) => Ok((StepStatus::Failed(m), None, None)),
        Attempt::Goto(g) => Ok((StepStatus::Switched(g.descriptor), None, Some(g))),
        Attempt::Exception(e) => Err(e),
    }
}

/// After the first attempt raised `error`: retries while the step's policy says so.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn retry_task(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    ctxs: &mut Contexts,
    rec: &TraceWriter<'_>,
    trace: &mut Trace,
    mut error: StepError,
) -> TaskResult {
    let mut attempts = Attempts::starting_at(&step.options.retry, 1);
    while let AfterFailure::Retry(delay) = attempts.failed(&error) {
        rec.emit(
            trace,
            Signal::StepRetried {
                step: step.name.clone(),
                attempt: attempts.current(),
                error: error.to_string(),
                delay,
            },
        );
        attempts.back_off(delay).await;
        let ctx = start_attempt(ids, attempts.current(), ctxs, rec, rec.now(), trace);
        let (outcome, ctx) = attempt_once(step, data, ctx).await;
        if let Some(ctx) = ctx {
            ctxs.give_back(ctx);
        }
        match task_result(outcome) {
            Ok(r) => return r,
            Err(e) => error = e,
        }
    }
    (StepStatus::Raised(error.to_string()), None, None)
}

/// An attempt's result, and its context unless the attempt lost it (a panic, a timeout:
/// then what it stored there is lost with it, unless an earlier step had stored values).
pub(crate) type Attempted = (Attempt, Option<ExecutionContext>);

pub(crate) fn panicked(p: Box<dyn Any + Send>) -> Attempted {
    (
        Attempt::Exception(HandlerError::panicked(panic_message(&*p))),
        None,
    )
}

/// An attempt whose future is not there to poll (polled after it ended).
pub(crate) fn no_future() -> Attempted {
    (
        Attempt::Exception(HandlerError::msg("the step's future is gone")),
        None,
    )
}

/// One attempt of a plain Inline step, its future made in `slot` and polled there: one
/// guard against panics covers making the future and each poll of it. (A plain function
/// returning the poller, not an `async fn`, so that the result is not passed up through
/// one more future.)
pub(crate) fn attempt_in<'a>(
    step: &'a StepDef,
    data: Input<'a>,
    ctx: ExecutionContext,
    mut slot: std::pin::Pin<&'a mut step::StepSlot>,
) -> impl std::future::Future<Output = Attempted> + 'a {
    use std::task::Poll;
    let mut start = Some((data, ctx));
    std::future::poll_fn(move |cx| {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some((data, ctx)) = start.take() {
                slot.as_mut().fill_with(|v| (step.run)(data, ctx, v));
            }
            slot.as_mut().poll(cx)
        }));
        let attempted = match r {
            Ok(Some(Poll::Pending)) => return Poll::Pending,
            Ok(Some(Poll::Ready((a, ctx)))) => (a, Some(ctx)),
            // Polled again after it ended: cannot happen, as a future is not polled after
            // it is ready.
            Ok(None) => no_future(),
            Err(p) => panicked(p),
        };
        slot.as_mut().clear();
        Poll::Ready(attempted)
    })
}

/// One attempt on the step's executor, with its timeout; a panic is an exception. The
/// common case (Inline, no timeout) goes through [`attempt_in`] with a slot of its own;
/// the others through a boxed driver, so that this future stays small.
pub(crate) async fn attempt_once(step: &StepDef, data: &Datum, ctx: ExecutionContext) -> Attempted {
    if step.options.executor != Executor::Inline || step.options.timeout.is_some() {
        return Box::pin(attempt_elsewhere(step, data, ctx)).await;
    }
    let slot = std::pin::pin!(step::StepSlot::new());
    attempt_in(step, Input::Lent(data), ctx, slot).await
}

pub(crate) async fn attempt_elsewhere(
    step: &StepDef,
    data: &Datum,
    ctx: ExecutionContext,
) -> Attempted {
    if step.options.executor == Executor::Process {
        // The child runs the step; the context's shared values do not cross.
        let attempt = match (&step.processes, step.codec) {
            (Some(pool), Some(codec)) => {
                pool.run(&step.name, codec, data, step.options.timeout)
                    .await
            }
            _ => Attempt::Exception(HandlerError::permanent_msg(format!(
                "step `{}` runs on the Process executor but cannot cross processes: build it with `.with_serde::<I, O>()`",
                step.name
            ))),
        };
        return (attempt, Some(ctx));
    }
    let fut =
        match std::panic::catch_unwind(AssertUnwindSafe(|| step.start(Input::Lent(data), ctx))) {
            Ok(f) => f,
            Err(p) => return panicked(p),
        };
    let caught = async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Some((a, ctx))) => (a, Some(ctx)),
            Ok(None) => no_future(),
            Err(p) => panicked(p),
        }
    };
    let timeout = step.options.timeout;
    let bounded = async move {
        crate::executor::bounded(timeout, caught)
            .await
            .unwrap_or_else(|timed_out| (Attempt::Exception(timed_out), None))
    };
    match (step.options.executor, &step.pool) {
        // Aborted when this attempt is dropped (a run given up on), as a handler's is.
        (Executor::Tokio, _) => AbortOnDrop::spawn(bounded)
            .join()
            .await
            .unwrap_or_else(|ended| (Attempt::Exception(ended), None)),
        (Executor::ThreadPool | Executor::Custom, Some(pool)) => {
            let rt = tokio::runtime::Handle::current();
            match pool.run(move || rt.block_on(bounded)).await {
                Ok(a) => a,
                Err(p) => (Attempt::Exception(HandlerError::panicked(p.0)), None),
            }
        }
        _ => bounded.await,
    }
}
