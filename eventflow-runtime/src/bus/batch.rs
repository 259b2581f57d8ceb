//! Batched handlers: `#[event_handler("metric.*", batch(max_size = 100, max_wait = "50ms"))]`
//! on an `async fn` taking `Vec<T>` (or `Vec<Envelope>`).
//!
//! Events for the handler are gathered until `max_size` are waiting or `max_wait` has
//! passed since the first of them, whichever comes first; then the handler runs once with
//! all of them. Each event's delivery waits for its batch (so a network backend
//! acknowledges an event only after the batch that held it has settled).
//!
//! - An event whose payload cannot be decoded as `T` never joins a batch: it goes to dead
//!   letters at once, with the payload error.
//! - A filter runs per event, before batching.
//! - A failed batch is retried whole, in this process, per the handler's retry policy
//!   (also on Redis: the events stay pending meanwhile). Past the policy, each event of the
//!   batch goes to dead letters on its own, with a [`BatchError`] naming the batch's
//!   failure; retrying such a dead letter delivers that one event into a new batch.
//! - `timeout` bounds each attempt of the batch. A batched handler runs on a tokio task of
//!   its own; it takes no executor, and `concurrency` does not apply to it.
//!
//! Metrics count each event as delivered and then succeeded or dead-lettered; attempts
//! and retries count once per batch; `eventflow_batch_size` records each batch's size.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::bus::EventBus;
use crate::error::{EventError, HandlerError, HandlerErrorKind, PayloadError};
use crate::event::{Envelope, Event};
use crate::util::BoxFuture;
use std::panic::AssertUnwindSafe;
use std::time::SystemTime;

use futures::FutureExt;
use tracing::Instrument;

use super::Inner;
use super::attempt::give_up;
use super::compiled::CompiledHandler;
use super::handler::HandlerFn;
use crate::delivery::{HandlerOutcome, OutcomeStatus};
use crate::executor::{bounded, flatten_panic, panic_message};
use crate::retry::{AfterFailure, Attempts};
use crate::telemetry::Tally;
use crate::util::{clock, since};

/// How a batched handler gathers events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// A batch runs as soon as this many events wait (at least 1).
    pub max_size: usize,
    /// A batch runs at the latest this long after its first event arrived.
    pub max_wait: Duration,
}

/// The error each event of a batch is dead-lettered with when the batch gave up.
#[derive(Debug, thiserror::Error)]
#[error("its batch of {size} event(s) failed: {message}")]
pub struct BatchError {
    /// Events in the batch.
    pub size: usize,
    /// The batch's last error.
    pub message: String,
}

/// What a batched handler gets: the events of the batch, and the bus.
#[derive(Clone)]
pub struct BatchContext {
    envelopes: Arc<[Envelope]>,
    attempt: u32,
    handler: Arc<str>,
    bus: EventBus,
}

impl BatchContext {
    pub(crate) fn new(
        envelopes: Arc<[Envelope]>,
        attempt: u32,
        handler: Arc<str>,
        bus: EventBus,
    ) -> Self {
        BatchContext {
            envelopes,
            attempt,
            handler,
            bus,
        }
    }

    /// The events of the batch, in arrival order.
    pub fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    /// The payloads as `T`s, in arrival order.
    pub fn decode<T: DeserializeOwned + Clone + 'static>(&self) -> Result<Vec<T>, HandlerError> {
        self.envelopes
            .iter()
            .map(|env| decode_one::<T>(env).map(std::borrow::Cow::into_owned))
            .collect()
    }

    /// The attempt of this batch, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The name of the handler being run.
    pub fn handler_name(&self) -> &str {
        &self.handler
    }

    /// The bus the events came from.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Publishes an event; it carries the bus's headers and those of the batch's first
    /// event.
    pub async fn publish<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        super::context::Publisher::new(&self.bus, self.envelopes.first())
            .publish(event)
            .await
    }
}

/// Decodes one event, or a permanent payload error naming it and the type.
pub(crate) fn decode_one<T: DeserializeOwned + Clone + 'static>(
    env: &Envelope,
) -> Result<std::borrow::Cow<'_, T>, HandlerError> {
    env.payload.decode::<T>().map_err(|e| {
        HandlerError::with_kind(
            HandlerErrorKind::Payload,
            PayloadError {
                event: env.name.to_string(),
                id: env.id,
                expected: std::any::type_name::<T>(),
                reason: e.to_string(),
            },
        )
    })
}

/// Checks that `env`'s payload decodes as a `T`: what `#[event_handler(batch(...))]` runs
/// on each event before it joins a batch.
pub fn check_payload<T: DeserializeOwned + Clone + 'static>(
    env: &Envelope,
) -> Result<(), HandlerError> {
    decode_one::<T>(env).map(|_| ())
}

/// The entry points `#[event_handler(batch(...))]` generates.
#[derive(Clone, Copy)]
pub struct BatchInvoke {
    /// Runs the handler on a batch.
    pub run: fn(BatchContext) -> BoxFuture<'static, Result<(), HandlerError>>,
    /// Checks one event before it joins a batch.
    pub check: fn(&Envelope) -> Result<(), HandlerError>,
}

pub(crate) type DynBatch =
    dyn Fn(BatchContext) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;
pub(crate) type DynCheck = dyn Fn(&Envelope) -> Result<(), HandlerError> + Send + Sync;

/// How one event's batch ended: its attempts, and the error it gave up with and when the
/// batch first failed.
pub(crate) type BatchOutcome = (u32, Option<(HandlerError, std::time::SystemTime)>);

pub(crate) type Waiting = (Envelope, oneshot::Sender<BatchOutcome>);

/// The events waiting for one handler's next batch.
pub(crate) struct Batcher {
    pub(crate) config: BatchConfig,
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    waiting: Vec<Waiting>,
    generation: u64,
}

/// What to do after adding an event.
pub(crate) enum Added {
    /// The batch is full: run it.
    Full(Vec<Waiting>),
    /// The first event of a batch: start its `max_wait` timer for this generation.
    First(u64),
    /// Nothing to do.
    Queued,
}

impl Batcher {
    pub(crate) fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::util::lock(&self.state)
    }

    pub(crate) fn add(&self, item: Waiting) -> Added {
        let mut s = self.lock();
        s.waiting.push(item);
        if s.waiting.len() >= self.config.max_size.max(1) {
            s.generation += 1;
            return Added::Full(std::mem::take(&mut s.waiting));
        }
        if s.waiting.len() == 1 {
            Added::First(s.generation)
        } else {
            Added::Queued
        }
    }

    /// The waiting events, if they are still the batch of `generation` (not already run
    /// because it filled up).
    pub(crate) fn take(&self, generation: u64) -> Option<Vec<Waiting>> {
        let mut s = self.lock();
        if s.generation != generation || s.waiting.is_empty() {
            return None;
        }
        s.generation += 1;
        Some(std::mem::take(&mut s.waiting))
    }
}

/// Puts the event in its handler's next batch and waits for the batch's outcome.
pub(super) async fn deliver_batched(
    inner: &Arc<Inner>,
    slot: &Arc<CompiledHandler>,
    envelope: &Envelope,
    tally: &Tally<'_>,
    check: Option<&crate::bus::batch::DynCheck>,
) -> HandlerOutcome {
    tally.delivered();
    let now = SystemTime::now();
    if let Some(check) = check
        && let Err(err) = check(envelope)
    {
        // A payload that cannot be decoded would fail every batch it joined.
        tally.failed_attempts();
        return give_up(inner, slot, tally, envelope, 1, err, now, now).await;
    }
    let Some(batcher) = &slot.batcher else {
        let err = HandlerError::permanent_msg("a batched handler without batch settings");
        return give_up(inner, slot, tally, envelope, 1, err, now, now).await;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    match batcher.add((envelope.clone(), tx)) {
        Added::Full(items) => {
            tokio::spawn(run_batch(inner.clone(), slot.clone(), items));
        }
        Added::First(generation) => {
            let (inner, slot, wait) = (inner.clone(), slot.clone(), batcher.config.max_wait);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let items = slot.batcher.as_ref().and_then(|b| b.take(generation));
                if let Some(items) = items {
                    run_batch(inner, slot, items).await;
                }
            });
        }
        Added::Queued => {}
    }
    match rx.await {
        Ok((attempts, None)) => {
            tally.succeeded();
            if let Some(r) = &inner.recorder {
                r.record_outcome(&slot.name, envelope, attempts, None);
            }
            HandlerOutcome {
                handler: slot.name.clone(),
                attempts,
                status: OutcomeStatus::Succeeded,
                value: None,
            }
        }
        Ok((attempts, Some((err, first_failed_at)))) => {
            give_up(
                inner,
                slot,
                tally,
                envelope,
                attempts,
                err,
                first_failed_at,
                SystemTime::now(),
            )
            .await
        }
        Err(_) => HandlerOutcome {
            handler: slot.name.clone(),
            attempts: 0,
            status: OutcomeStatus::Cancelled,
            value: None,
        },
    }
}

/// Runs one batch with retries, then tells each of its events how it ended.
pub(super) async fn run_batch(inner: Arc<Inner>, slot: Arc<CompiledHandler>, items: Vec<Waiting>) {
    let slot = &slot;
    let HandlerFn::Batch { run, .. } = &slot.func else {
        return;
    };
    let (envelopes, senders): (Vec<Envelope>, Vec<_>) = items.into_iter().unzip();
    let size = envelopes.len();
    let Some(first_name) = envelopes.first().map(|e| e.name.clone()) else {
        return;
    };
    let envelopes: Arc<[Envelope]> = envelopes.into();
    if let Some(m) = &slot.metrics {
        m.batch_size(size);
    }
    // Attempts and retries count once per batch, under its first event's name.
    let tally = Tally::new(&slot.counters, slot.metrics.as_ref(), &first_name);
    let mut attempts = Attempts::starting_at(&slot.options.retry, 1);
    let failure = loop {
        let attempt = attempts.current();
        let span = if inner.telemetry.tracing {
            tracing::debug_span!("eventflow.batch", handler = %slot.name, size, attempt)
        } else {
            tracing::Span::none()
        };
        let ctx = BatchContext::new(
            envelopes.clone(),
            attempt,
            slot.name.clone(),
            EventBus {
                inner: inner.clone(),
            },
        );
        let t0 = tally.timed().then(|| clock().now());
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| run(ctx))) {
            Ok(fut) => {
                let caught = AssertUnwindSafe(fut).catch_unwind().instrument(span);
                match bounded(slot.options.timeout, caught).await {
                    Ok(r) => flatten_panic(r),
                    Err(timed_out) => Err(timed_out),
                }
            }
            Err(p) => Err(HandlerError::panicked(panic_message(&*p))),
        };
        if let Some(t0) = t0 {
            tally.attempt_took(since(t0));
        }
        let err = match result {
            Ok(()) => break None,
            Err(err) => err,
        };
        tally.failed_attempts();
        match attempts.failed(&err) {
            AfterFailure::Retry(delay) => {
                tally.retried();
                tracing::warn!(handler = %slot.name, size, attempt, ?delay, error = %err,
                    "eventflow: batch failed; retrying");
                attempts.back_off(delay).await;
            }
            AfterFailure::GiveUp {
                first_failed_at, ..
            } => break Some((err, first_failed_at)),
        }
    };
    let attempt = attempts.current();
    for tx in senders {
        let outcome = failure.as_ref().map(|(err, at)| {
            let each = BatchError {
                size,
                message: err.to_string(),
            };
            (HandlerError::with_kind(err.kind(), each), *at)
        });
        // A delivery that went away (cancelled at shutdown) needs no answer.
        let _ = tx.send((attempt, outcome));
    }
}

impl std::fmt::Debug for BatchInvoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchInvoke").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for BatchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchContext").finish_non_exhaustive()
    }
}
