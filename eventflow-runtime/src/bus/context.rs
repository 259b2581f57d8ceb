//! The publishing core every context shares (handler, batch, schedule and hook contexts):
//! events published from a context descend from the event being handled, when there is
//! one, and a plain (blocking) function publishes by blocking on the bus's runtime.

use serde::Serialize;

use super::EventBus;
use crate::error::EventError;
use crate::event::{Envelope, Event};

/// Publishes on `bus`, as a consequence of `parent` when there is one.
pub(crate) struct Publisher<'a> {
    bus: &'a EventBus,
    parent: Option<&'a Envelope>,
}

impl<'a> Publisher<'a> {
    pub(crate) fn new(bus: &'a EventBus, parent: Option<&'a Envelope>) -> Self {
        Publisher { bus, parent }
    }

    fn descend(&self, envelope: Envelope) -> Envelope {
        match self.parent {
            Some(p) => envelope.caused_by(p),
            None => envelope,
        }
    }

    pub(crate) async fn publish<E: Event + Serialize + Send + Sync>(
        self,
        event: E,
    ) -> Result<(), EventError> {
        let env = self.descend(Envelope::new(event));
        self.bus.publish_envelope(env).await
    }

    pub(crate) async fn publish_with<E: Event + Serialize + Send + Sync>(
        self,
        event: E,
        options: crate::event::PublishOptions,
    ) -> Result<(), EventError> {
        let env = self.descend(Envelope::new(event));
        self.bus.publish_envelope_with(env, options).await
    }

    pub(crate) async fn publish_raw(
        self,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), EventError> {
        let env = self.descend(super::publish::raw_envelope(name, payload)?);
        self.bus.publish_envelope(env).await
    }

    pub(crate) fn publish_blocking<E: Event + Serialize + Send + Sync>(
        self,
        event: E,
    ) -> Result<(), EventError> {
        let env = self.descend(Envelope::new(event));
        self.bus.runtime().block_on(self.bus.publish_envelope(env))
    }
}
