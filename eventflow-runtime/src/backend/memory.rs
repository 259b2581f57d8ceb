//! The memory backend: delivery in this process, nothing serialized.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::queue::{DEFAULT_WORKERS, Workers};
use super::{Backend, BackendHealth, DelayedEvent, DelayedPage, Delivery, DeliverySink};
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

/// Delivers in this process: each accepted envelope is handed to the sink at once and run
/// on a worker (a tokio task) as soon as one of [`workers`](Self::workers) is free; while
/// all are busy, waiting events are taken highest priority first. Nothing is serialized. Delayed events wait in this process and
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
    room: Arc<Room>,
    when_full: WhenFull,
    workers: Arc<Workers<Place>>,
    delayed: Arc<Delayed>,
}

/// Delayed events waiting in this process, soonest first, each with its task. The map
/// decides who has an event: the task that fires takes it out before delivering it, and a
/// cancel takes it out before stopping the task, so an event is delivered or cancelled,
/// never both.
#[derive(Default)]
struct Delayed {
    seq: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<DelayedMap>,
}

type DelayedMap = std::collections::BTreeMap<
    (std::time::SystemTime, u64),
    (DelayedEvent, Option<tokio::task::AbortHandle>),
>;

impl Delayed {
    fn lock(&self) -> std::sync::MutexGuard<'_, DelayedMap> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The places for events a memory bus holds: a count against a bound (two atomic
/// operations an event in the common case), and a wake-up for publishers waiting for room.
struct Room {
    held: AtomicUsize,
    max: usize,
    waiters: AtomicUsize,
    freed: Notify,
}

impl Room {
    fn new(max: usize) -> Arc<Room> {
        Arc::new(Room {
            held: AtomicUsize::new(0),
            max,
            waiters: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A place now, if there is one.
    fn try_take(self: &Arc<Self>) -> Option<Place> {
        if self.held.fetch_add(1, Ordering::AcqRel) < self.max {
            Some(Place(self.clone()))
        } else {
            self.held.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }

    /// A place within `timeout`, if one comes free.
    async fn take(self: &Arc<Self>, timeout: Duration) -> Option<Place> {
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if let Some(p) = self.try_take() {
                    return p;
                }
                freed.await;
            }
        })
        .await;
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        waited.ok()
    }
}

/// One event's place in a [`Room`], given back when dropped.
struct Place(Arc<Room>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
        if self.0.waiters.load(Ordering::Acquire) > 0 {
            self.0.freed.notify_one();
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            sink: OnceLock::new(),
            dead_letters: Arc::new(MemoryDeadLetters::default()),
            room: Room::new(DEFAULT_MAX_WAITING),
            when_full: WhenFull::default(),
            workers: Workers::new(DEFAULT_WORKERS),
            delayed: Arc::default(),
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
        self.room = Room::new(n.clamp(1, usize::MAX / 2));
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

    /// Runs at most `n` deliveries at once (at least 1; default [`DEFAULT_WORKERS`]).
    /// Events published while every worker is busy wait for one, and are taken highest
    /// [`priority`](crate::Envelope::priority) first, in publish order within a priority.
    /// A handler's own `concurrency` limit orders the deliveries waiting for it the same
    /// way.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Workers::new(n);
        self
    }

    /// Events waiting for a worker now (see [`workers`](Self::workers)).
    pub fn queued(&self) -> usize {
        self.workers.queued()
    }

    /// What publish does when the bus holds `max_waiting` events.
    pub fn when_full(mut self, when: WhenFull) -> Self {
        self.when_full = when;
        self
    }

    /// Events held now: published and not yet done with.
    pub fn waiting(&self) -> usize {
        self.room.held.load(Ordering::Acquire).min(self.room.max)
    }

    /// A place for one more event, or why there is none.
    async fn room_for(&self, name: &str) -> Result<Place, PublishError> {
        if let Some(p) = self.room.try_take() {
            return Ok(p);
        }
        let full = || PublishError::Full {
            name: name.to_owned(),
            max_waiting: self.room.max,
        };
        match self.when_full {
            WhenFull::Refuse => Err(full()),
            WhenFull::Wait(t) => self.room.take(t).await.ok_or_else(full),
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

/// A publish accepted at once: a zero-sized future, so boxing it allocates nothing.
struct Accepted;

impl Future for Accepted {
    type Output = Result<(), PublishError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
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
        if let Some(permit) = self.room.try_take() {
            let priority = envelope.priority;
            let work = sink.deliver(Delivery::new(envelope));
            self.workers.submit(priority, work, permit);
            return Box::pin(Accepted);
        }
        Box::pin(async move {
            let permit = self.room_for(&envelope.name).await?;
            let priority = envelope.priority;
            let work = sink.deliver(Delivery::new(envelope));
            self.workers.submit(priority, work, permit);
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
            let workers = self.workers.clone();
            let due = std::time::SystemTime::now() + delay;
            let key = (due, self.delayed.seq.fetch_add(1, Ordering::Relaxed));
            let info = DelayedEvent::new(envelope.id, envelope.name.as_str(), due)
                .with_priority(envelope.priority);
            // Entered before the task can fire, so that it finds itself there.
            self.delayed.lock().insert(key, (info, None));
            let delayed = self.delayed.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if delayed.lock().remove(&key).is_none() {
                    return; // cancelled
                }
                let priority = envelope.priority;
                let work = sink.deliver(Delivery::new(envelope));
                workers.submit(priority, work, permit);
            });
            if let Some(entry) = self.delayed.lock().get_mut(&key) {
                entry.1 = Some(task.abort_handle());
            }
            Ok(())
        })
    }

    fn delayed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, Result<DelayedPage, ConnectionError>> {
        let start = match cursor.map(str::parse::<usize>) {
            None => Ok(0),
            Some(Ok(n)) => Ok(n),
            Some(Err(_)) => Err(ConnectionError {
                backend: "memory",
                message: "the cursor is not one this backend returned".into(),
                source: None,
            }),
        };
        let page = start.map(|start| {
            let limit = limit.clamp(1, super::MAX_DELAYED_PAGE);
            let waiting = self.delayed.lock();
            let events: Vec<DelayedEvent> = waiting
                .values()
                .skip(start)
                .take(limit)
                .map(|(e, _)| e.clone())
                .collect();
            let end = start.saturating_add(events.len());
            let next = (end < waiting.len()).then(|| end.to_string());
            DelayedPage::new(events, next)
        });
        Box::pin(std::future::ready(page))
    }

    fn cancel_delayed(
        &self,
        id: crate::event::EventId,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        let mut waiting = self.delayed.lock();
        let keys: Vec<_> = waiting
            .iter()
            .filter(|(_, (e, _))| e.id == id)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            if let Some((_, Some(task))) = waiting.remove(k) {
                // Its place among the held events goes with the task.
                task.abort();
            }
        }
        let found = !keys.is_empty();
        Box::pin(std::future::ready(Ok(found)))
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
