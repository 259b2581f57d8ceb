//! One attempt of a handler, and giving up on an event (its dead letter).

use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

use futures::FutureExt;

use super::Inner;
use super::compiled::CompiledHandler;
use super::deliver::OwnTask;
use super::handler::{HandlerContext, HandlerFn};
use crate::dead_letter::DeadLetter;
use crate::delivery::{HandlerOutcome, HandlerResult, OutcomeStatus};
use crate::error::HandlerError;
use crate::event::Envelope;
use crate::executor::{AbortOnDrop, Executor, bounded, flatten_panic};
use crate::telemetry::Tally;
use crate::util::BoxFuture;

/// Sends the event to dead letters for this handler and builds the outcome.
#[allow(clippy::too_many_arguments)]
pub(super) async fn give_up(
    inner: &Inner,
    slot: &CompiledHandler,
    tally: &Tally<'_>,
    envelope: &Envelope,
    attempt: u32,
    err: HandlerError,
    first_failed_at: SystemTime,
    failed_at: SystemTime,
) -> HandlerOutcome {
    let letter = DeadLetter::new(
        &*slot.name,
        envelope.clone(),
        &err,
        err.kind(),
        attempt,
        first_failed_at,
        failed_at,
    );
    let dead_letter_id = letter.id;
    let status = match inner.dead_letters.put(letter).await {
        Ok(()) => {
            tracing::error!(
                handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, error = %err,
                "eventflow: handler gave up; event sent to dead letters"
            );
            tally.dead_lettered();
            OutcomeStatus::DeadLettered {
                dead_letter_id,
                error: err,
            }
        }
        Err(store_err) => {
            tracing::error!(
                handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, error = %err,
                store_error = %store_err,
                "eventflow: handler gave up, and its dead letter could not be stored; the event is not acknowledged"
            );
            tally.dead_letter_failed();
            OutcomeStatus::DeadLetterNotStored {
                error: err,
                store_error: store_err.to_string(),
            }
        }
    };
    if let Some(r) = &inner.recorder {
        let error = match &status {
            OutcomeStatus::DeadLettered { error, .. }
            | OutcomeStatus::DeadLetterNotStored { error, .. } => Some(error.to_string()),
            _ => None,
        };
        r.record_outcome(&slot.name, envelope, attempt, error);
    }
    HandlerOutcome {
        handler: slot.name.clone(),
        attempts: attempt,
        status,
        value: None,
    }
}

/// Starts one attempt: the handler's own future for an inline async handler (the common
/// case, kept small and free of extra state), a boxed driver for everything else.
///
/// A `Tokio` handler whose delivery already runs on a task of its own is run on that task
/// rather than on yet another one.
#[inline]
pub(super) fn start_attempt<'a>(
    slot: &'a CompiledHandler,
    ctx: HandlerContext,
    runtime: &'a tokio::runtime::Handle,
    own_task: OwnTask,
) -> Result<BoxFuture<'a, HandlerResult>, HandlerError> {
    let executor = match slot.options.executor {
        Executor::Tokio if own_task == OwnTask::Yes => Executor::Inline,
        other => other,
    };
    // The event's own timeout, from its publish options, wins over the handler's.
    let timeout = ctx.envelope().timeout.or(slot.options.timeout);
    match (&slot.func, executor, timeout) {
        (HandlerFn::Batch { .. }, _, _) => Err(HandlerError::permanent_msg(
            "a batched handler runs through its batcher",
        )),
        (HandlerFn::Async(f), Executor::Inline, None) => {
            // Calling `f` may itself panic (a closure's synchronous part).
            flatten_panic(std::panic::catch_unwind(AssertUnwindSafe(|| Ok(f(ctx)))))
        }
        _ => Ok(Box::pin(run_attempt_elsewhere(
            slot, executor, ctx, runtime,
        ))),
    }
}

/// Attempts with a timeout, or on another task, pool or thread.
pub(super) async fn run_attempt_elsewhere(
    slot: &CompiledHandler,
    executor: Executor,
    ctx: HandlerContext,
    runtime: &tokio::runtime::Handle,
) -> HandlerResult {
    let timeout = ctx.envelope().timeout.or(slot.options.timeout);
    if let Some(children) = &slot.children {
        return super::process::run_in_child(children, &slot.name, ctx.envelope(), timeout).await;
    }
    match &slot.func {
        HandlerFn::Async(f) => {
            // Calling `f` may itself panic (a closure's synchronous part).
            let fut = flatten_panic(std::panic::catch_unwind(AssertUnwindSafe(|| Ok(f(ctx)))))?;
            match executor {
                Executor::Tokio => AbortOnDrop::spawn(bounded(timeout, fut)).join().await??,
                Executor::ThreadPool | Executor::Custom => {
                    let rt = runtime.clone();
                    let pool = slot.pool.clone();
                    match pool {
                        Some(pool) => {
                            match pool.run(move || rt.block_on(bounded(timeout, fut))).await {
                                Ok(r) => r?,
                                Err(p) => Err(HandlerError::panicked(p.0)),
                            }
                        }
                        None => Err(HandlerError::cancelled("no thread pool")),
                    }
                }
                _ => flatten_panic(bounded(timeout, AssertUnwindSafe(fut).catch_unwind()).await?),
            }
        }
        HandlerFn::Batch { .. } => Err(HandlerError::permanent_msg(
            "a batched handler runs through its batcher",
        )),
        HandlerFn::Blocking(f) => {
            // The thread cannot be stopped: on timeout the attempt is abandoned and counted
            // as failed (and as abandoned) while the function runs to its end on its
            // thread, which holds one of the pool's threads until then.
            let f = f.clone();
            let Some(pool) = &slot.pool else {
                return Err(HandlerError::cancelled("no thread for a plain function"));
            };
            match bounded(timeout, pool.run(move || f(ctx))).await {
                Ok(Ok(r)) => r,
                Ok(Err(p)) => Err(HandlerError::panicked(p.0)),
                Err(timed_out) => {
                    crate::telemetry::HandlerCounters::bump(&slot.counters.abandoned_attempts);
                    tracing::warn!(handler = %slot.name, "eventflow: a plain function ran past its timeout; its attempt is abandoned while its thread runs on");
                    Err(timed_out)
                }
            }
        }
    }
}
