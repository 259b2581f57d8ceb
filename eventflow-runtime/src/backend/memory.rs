//! The memory backend: delivery in this process, nothing serialized.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::{Backend, BackendHealth, Delivery, DeliverySink};
use crate::dead_letter::{DeadLetterStore, MemoryDeadLetters};
use crate::error::{ConnectionError, PublishError};
use crate::event::Envelope;
use crate::util::BoxFuture;

/// Delivers in this process: each accepted envelope is handed to the sink at once, on a
/// tokio task of its own. Nothing is serialized. Delayed events wait in this process and
/// are lost if it stops first.
pub struct MemoryBackend {
    sink: OnceLock<Arc<dyn DeliverySink>>,
    dead_letters: Arc<dyn DeadLetterStore>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            sink: OnceLock::new(),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
        }
    }
}

impl MemoryBackend {
    /// A new memory backend, its dead letters in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps dead letters in `store` instead (one that outlives the process, say). When
    /// storing one fails, the delivery's report says so
    /// ([`OutcomeStatus::DeadLetterNotStored`](crate::OutcomeStatus::DeadLetterNotStored)).
    pub fn with_dead_letters(mut self, store: Arc<dyn DeadLetterStore>) -> Self {
        self.dead_letters = store;
        self
    }

    fn sink(&self, name: &str) -> Result<&Arc<dyn DeliverySink>, PublishError> {
        self.sink.get().ok_or_else(|| PublishError::Backend {
            name: name.to_owned(),
            source: ConnectionError {
                backend: "memory",
                message: "the backend was not started".into(),
                source: None,
            },
        })
    }
}

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn delivers_without_consume(&self) -> bool {
        true
    }

    fn start(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let res = self.sink.set(sink).map_err(|_| ConnectionError {
            backend: "memory",
            message: "this backend is already started by another bus".into(),
            source: None,
        });
        Box::pin(async move { res })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), PublishError>> {
        let res = self.sink(&envelope.name).map(|sink| {
            tokio::spawn(sink.deliver(Delivery::new(envelope)));
        });
        Box::pin(async move { res })
    }

    fn publish_delayed(
        &self,
        envelope: Envelope,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        let res = self.sink(&envelope.name).map(|sink| {
            let sink = sink.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                sink.deliver(Delivery::new(envelope)).await
            });
        });
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
        let dead = self.dead_letters.clone();
        Box::pin(async move {
            BackendHealth {
                reachable,
                lag: Some(0),
                pending: Some(0),
                dead_letters: dead.len().await.ok().map(|n| n as u64),
                detail: None,
            }
        })
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}
