//! Backends: how published events reach the processes that handle them.
//!
//! The bus hands each accepted [`Envelope`] to its backend and gives the backend a
//! [`DeliverySink`] to deliver envelopes into. The memory backend (the default) delivers in
//! this process without copying or serializing anything. A network backend serializes the
//! envelope, stores it in the broker, reads it back in a worker and acknowledges it once
//! the sink's future has settled every handler's outcome; so a broker such as Redis Streams
//! or NATS JetStream fits behind the same trait without changing users' handlers.

use std::sync::{Arc, OnceLock};

use crate::bus::DeliveryReport;
use crate::dead_letter::{DeadLetterStore, MemoryDeadLetters};
use crate::error::ConnectionError;
use crate::event::Envelope;
use crate::handler::BoxFuture;

/// Receives envelopes from a backend and runs their handlers; the returned future settles
/// when every matching handler has succeeded or sent the event to dead letters.
pub trait DeliverySink: Send + Sync + 'static {
    /// Delivers one envelope.
    fn deliver(&self, envelope: Envelope) -> BoxFuture<'static, DeliveryReport>;
}

/// What a backend reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// Whether the backend answers.
    pub reachable: bool,
    /// Entries waiting to be read, where the backend knows.
    pub lag: Option<u64>,
    /// Entries read but not acknowledged, where the backend knows.
    pub pending: Option<u64>,
    /// What went wrong, if anything.
    pub detail: Option<String>,
}

/// A transport for events. See the [module documentation](self).
pub trait Backend: Send + Sync + 'static {
    /// A short name (`memory`, `redis`).
    fn name(&self) -> &'static str;
    /// Begins delivering accepted envelopes into `sink`.
    fn start(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>>;
    /// Accepts an envelope; returns once it is accepted, not once it is handled.
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), ConnectionError>>;
    /// Stops taking envelopes from the transport (in-flight deliveries go on).
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Where dead letters are kept.
    fn dead_letters(&self) -> Arc<dyn DeadLetterStore>;
    /// Reachability and queue figures.
    fn health(&self) -> BoxFuture<'_, BackendHealth>;
}

/// Delivers in this process: each accepted envelope is handed to the sink at once, on a
/// tokio task of its own. Nothing is serialized.
#[derive(Default)]
pub struct MemoryBackend {
    sink: OnceLock<Arc<dyn DeliverySink>>,
    dead_letters: Arc<MemoryDeadLetters>,
}

impl MemoryBackend {
    /// A new memory backend.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn start(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let res = self.sink.set(sink).map_err(|_| ConnectionError {
            backend: "memory",
            message: "this backend is already started by another bus".into(),
            source: None,
        });
        Box::pin(async move { res })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let res = match self.sink.get() {
            Some(sink) => {
                tokio::spawn(sink.deliver(envelope));
                Ok(())
            }
            None => Err(ConnectionError {
                backend: "memory",
                message: "the backend was not started".into(),
                source: None,
            }),
        };
        Box::pin(async move { res })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        self.dead_letters.clone()
    }

    fn health(&self) -> BoxFuture<'_, BackendHealth> {
        let reachable = self.sink.get().is_some();
        Box::pin(async move {
            BackendHealth {
                reachable,
                lag: Some(0),
                pending: Some(0),
                detail: None,
            }
        })
    }
}
