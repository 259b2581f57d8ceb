//! Delivering one event to its handlers, and to one handler with retries.
//!
//! The hot path (one event dispatched to one Inline handler) is kept lean, keeping every
//! behaviour (ids, timestamps, correlation and causation, trace context, retries, caught
//! panics, timeouts, metrics, spans when someone listens, shutdown accounting):
//!
//! - two heap allocations per dispatch, the event's shared payload and the handler's
//!   boxed future (`tests/allocations.rs` holds the count): the report keeps a lone
//!   outcome inline ([`Outcomes`]), not in a `Vec`;
//! - one steady-clock read starts an attempt's timing, its publish-to-handle lag and its
//!   rate tick; the wall clock is read through a per-thread anchor on the steady clock
//!   (`util::wall_at`, re-read every 100 ms), not per event;
//! - metric handles of a handler's first event name (and the published counter of the
//!   bus's first name) are found without a lock or a hash;
//! - a finished delivery wakes `unsubscribe` only when one waits;
//! - spans are built only when a subscriber is interested (`tracing`'s callsite check);
//! - the delivery is an `async move` block capturing its arguments once (an `async fn`
//!   keeps each argument twice), and `dispatch` awaits it straight from the call that
//!   makes it (not out of a `Result`), so that it is held once: `dispatch`'s future is
//!   1,168 bytes, not 2,720, and each move of it copies that much less. A backend's delivery waits on shutdown's
//!   cancellation in place (`sink.rs`), not inside a `select!` that would move it again;
//!   boxed, it is 1,024 bytes (2,048 before), within the allocator's per-thread cache;
//! - the in-flight guard holds the delivery's one reference to the bus;
//! - the router finds the targets of its first name without its cache's lock.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;
use tracing::Instrument;

use super::attempt::{give_up, start_attempt};
use super::batch::deliver_batched;
use super::compiled::CompiledHandler;
use super::handler::{HandlerContext, HandlerFn};
use super::inflight::InFlightGuard;
use super::routing::Routing;
use super::spans::{descend, parent_id};
use super::{EventBus, Inner};
use crate::backend::Retries;
use crate::delivery::{DeliveryReport, HandlerOutcome, OutcomeStatus, Outcomes};
use crate::event::Envelope;
use crate::executor::{AbortOnDrop, Executor, flatten_panic};
use crate::retry::{AfterFailure, Attempts};
use crate::telemetry::Tally;
use crate::util::Hex;
use crate::util::{clock, since, wall_at};

/// Whether a delivery already runs on a task of its own (one the backend spawned), so
/// that a lone handler that wants its own task can run right there.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnTask {
    Yes,
    No,
}

/// Delivers to the handlers at `targets`. Registers the delivery as in flight (and takes
/// its place in publish order) at once, before the returned future is first polled, so
/// shutdown sees every accepted event.
#[inline(always)]
pub(super) fn deliver_routed(
    inner: Arc<Inner>,
    mut envelope: Envelope,
    routing: Arc<Routing>,
    targets: Arc<[usize]>,
    own_task: OwnTask,
    retries: Retries,
) -> impl Future<Output = DeliveryReport> + Send + 'static {
    let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
    let key = inner.inflight.enter(&envelope);
    let span = if inner.telemetry.tracing {
        let (trace_id, span_id, parent) = descend(&mut envelope);
        let span = tracing::debug_span!(
            "eventflow.deliver",
            event = %envelope.name, id = %envelope.id, correlation = %envelope.correlation_id,
            trace_id = %Hex(trace_id), span_id = %Hex(span_id), parent_id = parent_id(parent),
        );
        span
    } else {
        tracing::Span::none()
    };
    if inner.telemetry.metrics {
        inner.telemetry.in_flight.increment(1.0);
    }
    // The guard holds the bus for the delivery (one reference, not two).
    let guard = InFlightGuard { inner, key };
    deliver_registered(guard, envelope, routing, targets, own_task, retries, seq).instrument(span)
}

/// The delivery itself: a plain function returning an `async move` block, so that its
/// arguments are captured once (an `async fn` keeps each argument twice in its future).
#[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
#[inline]
fn deliver_registered(
    guard: InFlightGuard,
    envelope: Envelope,
    routing: Arc<Routing>,
    targets: Arc<[usize]>,
    own_task: OwnTask,
    retries: Retries,
    seq: u64,
) -> impl Future<Output = DeliveryReport> + Send + 'static {
    async move {
        let inner = &guard.inner;
        if targets.is_empty() {
            tracing::debug!(event = %envelope.name, id = %envelope.id, "eventflow: no handler matches");
        }
        // Handlers on other tasks start first, then the inline ones run here, in order. A
        // lone async handler that wants a task of its own runs here when this delivery has one.
        let alone_on_own_task = own_task == OwnTask::Yes
            && targets.len() == 1
            && matches!(routing.handlers[targets[0]].func, HandlerFn::Async(_))
            && routing.handlers[targets[0]].options.executor == Executor::Tokio;
        // Written out at each use, not a closure: a closure would take room in this future.
        let mut spawned = Vec::new();
        for (pos, &i) in targets.iter().enumerate() {
            if !(alone_on_own_task || routing.handlers[i].runs_inline()) {
                let (inner, envelope) = (inner.clone(), envelope.clone());
                let slot = routing.handlers[i].clone();
                let task = tokio::spawn(async move {
                    deliver_to(&inner, &slot, &envelope, seq, OwnTask::Yes, retries).await
                });
                spawned.push((pos, AbortOnDrop(task)));
            }
        }
        let mut outcomes = Outcomes::with_capacity(targets.len());
        for &i in targets.iter() {
            if alone_on_own_task || routing.handlers[i].runs_inline() {
                let slot = &routing.handlers[i];
                outcomes.push(deliver_to(inner, slot, &envelope, seq, own_task, retries).await);
            }
        }
        if !spawned.is_empty() {
            Box::pin(join_spawned(&routing, &targets, &mut outcomes, spawned)).await;
        }
        let report = DeliveryReport {
            event_id: envelope.id,
            event: envelope.name,
            outcomes,
            cancelled: false,
        };
        // Out of flight once the report is made (and when this future is dropped before).
        drop(guard);
        report
    }
}

/// Waits for the handlers that run on tasks of their own and puts their outcomes at their
/// places in handler order (`outcomes` holds the inline ones, in order).
pub(super) async fn join_spawned(
    routing: &Routing,
    targets: &[usize],
    outcomes: &mut Outcomes,
    spawned: Vec<(usize, AbortOnDrop<HandlerOutcome>)>,
) {
    for (pos, mut task) in spawned {
        let outcome = match (&mut task.0).await {
            Ok(o) => o,
            Err(_) => HandlerOutcome {
                handler: routing.handlers[targets[pos]].name.clone(),
                attempts: 0,
                status: OutcomeStatus::Cancelled,
                value: None,
            },
        };
        // Positions ascend and every earlier place is filled, so `pos` is the right index.
        outcomes.insert(pos, outcome);
    }
}

pub(super) async fn deliver_to(
    inner: &Arc<Inner>,
    slot: &Arc<CompiledHandler>,
    envelope: &Envelope,
    seq: u64,
    own_task: OwnTask,
    retries: Retries,
) -> HandlerOutcome {
    // Counted while it runs, for `unsubscribe`; a handler already unsubscribed is skipped.
    let Some(_active) = slot.liveness.enter() else {
        return HandlerOutcome {
            handler: slot.name.clone(),
            attempts: 0,
            status: OutcomeStatus::Cancelled,
            value: None,
        };
    };
    let tally = Tally::new(&slot.counters, slot.metrics.as_ref(), &envelope.name);
    if let Some(keep) = &slot.filter
        && !keep(envelope)
    {
        tally.filtered();
        if let Some(r) = &inner.recorder {
            r.record_filtered(&slot.name, envelope);
        }
        return HandlerOutcome {
            handler: slot.name.clone(),
            attempts: 0,
            status: OutcomeStatus::Filtered,
            value: None,
        };
    }
    if let HandlerFn::Batch { check, .. } = &slot.func {
        return Box::pin(deliver_batched(
            inner,
            slot,
            envelope,
            &tally,
            check.as_deref(),
        ))
        .await;
    }
    tally.delivered();
    // The event's own attempt count, from its publish options, wins over the handler's.
    let with_event_attempts;
    let policy = match envelope.max_attempts {
        Some(n) => {
            let mut p = slot.options.retry;
            p.max_attempts = n;
            with_event_attempts = p;
            &with_event_attempts
        }
        None => &slot.options.retry,
    };
    let mut attempts = Attempts::starting_at(policy, envelope.attempt);
    // Publish to the first attempt's start is measured once, on the event's first delivery.
    let mut lag_unmeasured = attempts.current() == 1;
    loop {
        let attempt = attempts.current();
        // Rare paths are boxed so that the common one stays a small future.
        let permit = match &slot.gate {
            Some(g) => Some(Box::pin(g.acquire(envelope.priority, seq)).await),
            None => None,
        };
        let mut span = tracing::Span::none();
        let started = {
            let mut this = envelope.clone();
            this.attempt = attempt;
            if inner.telemetry.tracing {
                let (trace_id, span_id, parent) = descend(&mut this);
                span = tracing::debug_span!(
                    "eventflow.attempt",
                    handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt,
                    correlation = %envelope.correlation_id,
                    trace_id = %Hex(trace_id), span_id = %Hex(span_id), parent_id = parent_id(parent),
                );
            }
            let ctx = HandlerContext::new(
                this,
                slot.name.clone(),
                EventBus {
                    inner: inner.clone(),
                },
            );
            start_attempt(slot, ctx, &inner.runtime, own_task)
        };
        // One steady-clock read starts the attempt's timing, its lag and its rate tick.
        let t0 = tally.timed().then(|| clock().now());
        if let Some(t0) = t0
            && std::mem::take(&mut lag_unmeasured)
        {
            let lag = wall_at(t0).duration_since(envelope.timestamp);
            tally.waited(lag.unwrap_or_default(), t0);
        }
        let result = match started {
            Ok(fut) => flatten_panic(AssertUnwindSafe(fut.instrument(span)).catch_unwind().await),
            Err(e) => Err(e),
        };
        if let Some(t0) = t0 {
            tally.attempt_took(since(t0));
        }
        drop(permit);
        let err = match result {
            Ok(value) => {
                tally.succeeded();
                if let Some(r) = &inner.recorder {
                    r.record_outcome(&slot.name, envelope, attempt, None);
                }
                return HandlerOutcome {
                    handler: slot.name.clone(),
                    attempts: attempt,
                    status: OutcomeStatus::Succeeded,
                    value,
                };
            }
            Err(err) => err,
        };
        tally.failed_attempts();
        let delay = match attempts.failed(&err) {
            AfterFailure::Retry(delay) => delay,
            AfterFailure::GiveUp {
                first_failed_at,
                last_failed_at,
            } => {
                return Box::pin(give_up(
                    inner,
                    slot,
                    &tally,
                    envelope,
                    attempt,
                    err,
                    first_failed_at,
                    last_failed_at,
                ))
                .await;
            }
        };
        tally.retried();
        if retries == Retries::ByBackend {
            tracing::warn!(
                handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, ?delay, error = %err,
                "eventflow: handler failed; the backend retries it later"
            );
            return HandlerOutcome {
                handler: slot.name.clone(),
                attempts: attempt,
                status: OutcomeStatus::RetryScheduled { delay, error: err },
                value: None,
            };
        }
        tracing::warn!(
            handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, ?delay, error = %err,
            "eventflow: handler failed; retrying"
        );
        Box::pin(attempts.back_off(delay)).await;
    }
}
