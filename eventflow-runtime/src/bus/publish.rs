//! Publishing and dispatching: accepting an event, then handing it to the backend or
//! delivering it here.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tracing::Instrument;

use super::EventBus;
use super::deliver::{OwnTask, deliver_routed};
use super::spans::{descend, parent_id};
use crate::backend::Retries;
use crate::delivery::DeliveryReport;
use crate::error::{EventError, NoHandler, PublishError};
use crate::event::PublishOptions;
use crate::event::{Envelope, Event, EventName, Payload, TraceContext};
use crate::pattern::validate_name;
use crate::util::Hex;

pub(crate) fn raw_envelope(
    name: &str,
    payload: serde_json::Value,
) -> Result<Envelope, PublishError> {
    validate_name(name).map_err(|reason| PublishError::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    Ok(Envelope::with_payload(
        EventName::from(name),
        Payload::json(payload),
    ))
}

/// An accepted event, the routing table it was routed with, and its handlers there.
type Accepted = (Envelope, Arc<super::routing::Routing>, Arc<[usize]>);

/// Where an accepted event goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// To the handlers of this bus (`dispatch`).
    ThisProcess,
    /// To the backend, which may hand it to another process.
    Backend,
}

impl EventBus {
    /// Publishes an event; returns once the backend has accepted it, before handlers run.
    pub async fn publish<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        self.publish_envelope(Envelope::new(event)).await
    }

    /// Publishes an event given by name with a JSON payload.
    pub async fn publish_raw(
        &self,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), EventError> {
        self.publish_envelope(raw_envelope(name, payload)?).await
    }

    /// Publishes a prepared envelope (to set priority, headers, correlation).
    pub async fn publish_envelope(&self, envelope: Envelope) -> Result<(), EventError> {
        let (mut envelope, _, _) = self.accept(envelope, Via::Backend)?;
        let span = self.publish_span(&mut envelope);
        Ok(self
            .inner
            .backend
            .publish(envelope)
            .instrument(span)
            .await?)
    }

    /// Publishes an event with options for it alone: priority, timeout, attempts, delay,
    /// headers (see [`PublishOptions`] for what wins over what).
    pub async fn publish_with<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<(), EventError> {
        self.publish_envelope_with(Envelope::new(event), options)
            .await
    }

    /// [`publish_with`](Self::publish_with) for a prepared envelope.
    pub async fn publish_envelope_with(
        &self,
        envelope: Envelope,
        options: PublishOptions,
    ) -> Result<(), EventError> {
        match options.apply(envelope) {
            (envelope, Some(delay)) => self.publish_envelope_delayed(envelope, delay).await,
            (envelope, None) => self.publish_envelope(envelope).await,
        }
    }

    /// [`dispatch`](Self::dispatch) with options for this event alone (a `delay` is waited
    /// out here first).
    pub async fn dispatch_with<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<DeliveryReport, EventError> {
        let (envelope, delay) = options.apply(Envelope::new(event));
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        self.dispatch_envelope(envelope).await
    }

    /// Publishes an event for delivery after `delay`. The memory backend keeps it in this
    /// process (lost if the process stops first); the Redis backend keeps it in Redis.
    pub async fn publish_delayed<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
        delay: Duration,
    ) -> Result<(), EventError> {
        self.publish_envelope_delayed(Envelope::new(event), delay)
            .await
    }

    /// [`publish_delayed`](Self::publish_delayed) for a prepared envelope.
    pub async fn publish_envelope_delayed(
        &self,
        envelope: Envelope,
        delay: Duration,
    ) -> Result<(), EventError> {
        let (mut envelope, _, _) = self.accept(envelope, Via::Backend)?;
        let span = self.publish_span(&mut envelope);
        Ok(self
            .inner
            .backend
            .publish_delayed(envelope, delay)
            .instrument(span)
            .await?)
    }
    /// Delivers an event in this process and waits for every matching handler's outcome
    /// (retries included).
    pub async fn dispatch<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<DeliveryReport, EventError> {
        let (envelope, routing, targets) = self.accept(Envelope::new(event), Via::ThisProcess)?;
        Ok(self.deliver_here(envelope, routing, targets).await)
    }

    /// [`dispatch`](Self::dispatch) for an event given by name with a JSON payload.
    pub async fn dispatch_raw(
        &self,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<DeliveryReport, EventError> {
        self.dispatch_envelope(raw_envelope(name, payload)?).await
    }

    /// [`dispatch`](Self::dispatch) for a prepared envelope.
    pub async fn dispatch_envelope(
        &self,
        envelope: Envelope,
    ) -> Result<DeliveryReport, EventError> {
        let (envelope, routing, targets) = self.accept(envelope, Via::ThisProcess)?;
        Ok(self.deliver_here(envelope, routing, targets).await)
    }

    /// Accepts the event and returns its delivery in this process.
    pub(super) fn start_dispatch(
        &self,
        envelope: Envelope,
    ) -> Result<impl Future<Output = DeliveryReport> + Send + 'static, EventError> {
        let (envelope, routing, targets) = self.accept(envelope, Via::ThisProcess)?;
        Ok(self.deliver_here(envelope, routing, targets))
    }

    /// The delivery in this process of an accepted event. `dispatch` awaits it straight
    /// from this call, not out of a `Result`: the delivery's future is moved as few times
    /// as can be (each move copies all of it).
    #[inline(always)]
    fn deliver_here(
        &self,
        envelope: Envelope,
        routing: Arc<super::routing::Routing>,
        targets: Arc<[usize]>,
    ) -> impl Future<Output = DeliveryReport> + Send + 'static {
        deliver_routed(
            self.inner.clone(),
            envelope,
            routing,
            targets,
            OwnTask::No,
            Retries::InProcess,
        )
    }

    /// The publish's span, whose id becomes the parent in the event's trace context.
    fn publish_span(&self, envelope: &mut Envelope) -> tracing::Span {
        if !self.inner.telemetry.tracing {
            return tracing::Span::none();
        }
        let (trace_id, span_id, parent) = descend(envelope);
        let span = tracing::debug_span!(
            "eventflow.publish",
            event = %envelope.name, id = %envelope.id, correlation = %envelope.correlation_id,
            trace_id = %Hex(trace_id), span_id = %Hex(span_id), parent_id = parent_id(parent),
        );
        span
    }

    /// Checks that the bus takes the event, and finds its handlers.
    pub(super) fn accept(&self, mut envelope: Envelope, via: Via) -> Result<Accepted, EventError> {
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::Acquire) {
            return Err(PublishError::ShutDown {
                name: envelope.name.to_string(),
            }
            .into());
        }
        let routing = inner.routing.load_full();
        let targets = routing.router.lookup(&envelope.name);
        // Through a shared backend, a handler of another process may take it.
        let known = via == Via::ThisProcess || !inner.shared_backend;
        if targets.is_empty() && known && !inner.allow_unhandled {
            return Err(NoHandler {
                name: envelope.name.to_string(),
            }
            .into());
        }
        if envelope.trace.is_none()
            && let Some(v) = envelope.headers.remove(TraceContext::HEADER)
        {
            envelope.trace = TraceContext::parse(&v);
        }
        envelope.headers.inherit(&inner.headers);
        inner.published.fetch_add(1, Ordering::Relaxed);
        inner.telemetry.published(&envelope.name);
        if let Some(r) = &inner.recorder {
            r.record_published(&envelope);
        }
        Ok((envelope, routing, targets))
    }
}
