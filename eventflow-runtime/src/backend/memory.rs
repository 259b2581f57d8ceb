//! The memory backend: delivery in this process, nothing serialized.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Backend, BackendHealth, Delivery, DeliverySink};
use crate::dead_letter::{DeadLetterStore, MemoryDeadLetters};
use crate::error::{ConnectionError, PublishError};
use crate::event::Envelope;
use crate::util::BoxFuture;

/// How many published events a memory bus holds at most, by default: accepted and not yet
/// done with (waiting for a handler, running, waiting out a retry's backoff, or delayed).
/// About 2.7 KB each, so some 180 MB at the bound.
pub const DEFAULT_MAX_WAITING: usize = 65_536;

/// What publish does on a memory bus that holds [`max_waiting`](MemoryBackend::max_waiting)
/// events already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Wait for room, at most this long, then fail with
    /// [`PublishError::Full`](crate::PublishError::Full). The default, with 30 s:
    /// publishers slow down to the handlers' pace.
    Wait(Duration),
    /// Fail at once with [`PublishError::Full`](crate::PublishError::Full).
    Refuse,
}

impl Default for WhenFull {
    fn default() -> Self {
        WhenFull::Wait(Duration::from_secs(30))
    }
}

/// Delivers in this process: each accepted envelope is handed to the sink at once, on a
/// tokio task of its own. Nothing is serialized. Delayed events wait in this process and
/// are lost if it stops first.
///
/// Memory stays bounded: at most [`max_waiting`](Self::max_waiting) events (default
/// [`DEFAULT_MAX_WAITING`]) are held at once, from publish until every handler is done
/// with them (retries waiting out their backoff and delayed events included); past it,
/// publish waits or refuses ([`WhenFull`]). Dead letters are kept up to a bound too
/// ([`MemoryDeadLetters::with_retention`]).
pub struct MemoryBackend {
    sink: OnceLock<Arc<dyn DeliverySink>>,
    dead_letters: Arc<dyn DeadLetterStore>,
    room: Arc<Semaphore>,
    max_waiting: usize,
    when_full: WhenFull,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            sink: OnceLock::new(),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
            room: Arc::new(Semaphore::new(DEFAULT_MAX_WAITING)),
            max_waiting: DEFAULT_MAX_WAITING,
            when_full: WhenFull::default(),
        }
    }
}

impl MemoryBackend {
    /// A new memory backend, its dead letters in memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds at most `n` events at once (at least 1); see [`WhenFull`] for what publish
    /// does past it.
    pub fn max_waiting(mut self, n: usize) -> Self {
        let n = n.clamp(1, Semaphore::MAX_PERMITS);
        self.room = Arc::new(Semaphore::new(n));
        self.max_waiting = n;
        self
    }

    /// Keeps at most `max_count` dead letters in memory, none older than `max_age` (see
    /// [`MemoryDeadLetters::with_retention`]). Replaces a store set with
    /// [`with_dead_letters`](Self::with_dead_letters).
    pub fn dead_letter_retention(self, max_count: usize, max_age: Option<Duration>) -> Self {
        self.with_dead_letters(Arc::new(MemoryDeadLetters::with_retention(
            max_count, max_age,
        )))
    }

    /// What publish does when the bus holds `max_waiting` events.
    pub fn when_full(mut self, when: WhenFull) -> Self {
        self.when_full = when;
        self
    }

    /// Events held now: published and not yet done with.
    pub fn waiting(&self) -> usize {
        self.max_waiting
            .saturating_sub(self.room.available_permits())
    }

    /// A place for one more event, or why there is none.
    async fn room_for(&self, name: &str) -> Result<OwnedSemaphorePermit, PublishError> {
        if let Ok(p) = self.room.clone().try_acquire_owned() {
            return Ok(p);
        }
        let full = || PublishError::Full {
            name: name.to_owned(),
            max_waiting: self.max_waiting,
        };
        match self.when_full {
            WhenFull::Refuse => Err(full()),
            WhenFull::Wait(t) => {
                match tokio::time::timeout(t, self.room.clone().acquire_owned()).await {
                    Ok(Ok(p)) => Ok(p),
                    _ => Err(full()),
                }
            }
        }
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
        let sink = match self.sink(&envelope.name) {
            Ok(s) => s,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        // The common case, room at once, stays one small ready future.
        if let Ok(permit) = self.room.clone().try_acquire_owned() {
            let work = sink.deliver(Delivery::new(envelope));
            tokio::spawn(async move {
                let report = work.await;
                drop(permit);
                report
            });
            return Box::pin(std::future::ready(Ok(())));
        }
        Box::pin(async move {
            let permit = self.room_for(&envelope.name).await?;
            let work = sink.deliver(Delivery::new(envelope));
            tokio::spawn(async move {
                let report = work.await;
                drop(permit);
                report
            });
            Ok(())
        })
    }

    fn publish_delayed(
        &self,
        envelope: Envelope,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let sink = self.sink(&envelope.name)?.clone();
            let permit = self.room_for(&envelope.name).await?;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let report = sink.deliver(Delivery::new(envelope)).await;
                drop(permit);
                report
            });
            Ok(())
        })
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
        let waiting = self.waiting();
        Box::pin(async move {
            BackendHealth {
                reachable,
                lag: Some(0),
                pending: Some(waiting as u64),
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
