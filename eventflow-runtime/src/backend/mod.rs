//! Backends: how published events reach the processes that handle them.
//!
//! The bus hands each accepted [`Envelope`] to its backend and gives the backend a
//! [`DeliverySink`] to deliver envelopes into. The memory backend (the default) delivers in
//! this process without copying or serializing anything. A network backend serializes the
//! envelope, stores it in the broker, reads it back in a worker, and acknowledges it once
//! the sink's future has settled every handler's outcome: so a broker such as Redis
//! Streams or NATS JetStream fits behind the same trait without changing users' handlers.
//!
//! # Writing a backend
//!
//! A backend is a package of its own (as `eventflow-redis` is) that depends on this
//! crate's public API alone. It provides:
//!
//! 1. **Settings** that implement [`BackendConfig`], so that
//!    [`EventBusBuilder::backend_config`](crate::EventBusBuilder::backend_config) connects
//!    it when the bus is built, and an extension trait on
//!    [`EventBusBuilder`](crate::EventBusBuilder) whose methods fill those settings through
//!    [`backend_config_mut`](crate::EventBusBuilder::backend_config_mut) (users write
//!    `.redis(url).queue("orders")`; the settings compose in the order written).
//! 2. **The [`Backend`]**:
//!    - [`publish`](Backend::publish) serializes the envelope (`serde_json`; refuse what a
//!      worker could not read back) and stores it; it returns once the broker accepted it.
//!    - [`publish_delayed`](Backend::publish_delayed) keeps it until it is due, in the
//!      broker, so that it survives the publishing process.
//!    - [`start`](Backend::start) keeps the [`DeliverySink`];
//!      [`consume`](Backend::consume) starts the worker loop that reads entries.
//!    - [`request`](Backend::request) publishes a request and waits for its
//!      [`Reply`]; the worker sends [`Reply::from_report`] to the envelope's `reply_to`.
//!    - [`requeue`](Backend::requeue) queues a retried dead letter for its one handler, so
//!      that any worker that has the handler runs it.
//!    - [`claim_tick`](Backend::claim_tick) grants each tick of a scheduled function to one
//!      process of the queue.
//!    - [`delayed`](Backend::delayed) lists the events waiting for their time, and
//!      [`cancel_delayed`](Backend::cancel_delayed) cancels one.
//!    - [`stop`](Backend::stop) stops reading; [`flush`](Backend::flush) sends what
//!      follows the deliveries in flight (acknowledgements).
//!    - [`dead_letters`](Backend::dead_letters) is a [`DeadLetterStore`] in the broker, so
//!      that any process lists, pages, retries and removes them.
//!    - [`health`](Backend::health) says whether the broker answers, with lag, pending and
//!      dead-letter counts where it knows them.
//! 3. **The worker loop**, per entry read, with the helpers of [`broker`] (so that every
//!    backend applies the same rules): decode the entry or dead-letter it as invalid and go
//!    on; apply the poison rule to the broker's delivery count; deliver into the sink with
//!    [`Retries::ByBackend`] (a failed attempt comes back as a retry for the backend to
//!    schedule, so no worker sleeps through a backoff); then settle the report: acknowledge
//!    the entry in one atomic step with storing its retries, or leave it pending when
//!    shutdown cut the delivery short. Counts read from the broker are untrusted: use
//!    saturating arithmetic on them.
//! 4. **Proof**: a test file that implements [`BackendFactory`](crate::testing::BackendFactory)
//!    and invokes [`backend_suite!`](crate::backend_suite), which checks delivery once,
//!    retries with backoff, delayed events, dead letters, invalid entries, hand-over at
//!    shutdown and health against the real broker.

use std::sync::Arc;
use std::time::Duration;

use crate::dead_letter::DeadLetterStore;
use crate::delivery::{DeliveryReport, Reply};
use crate::error::{ConnectionError, EventError, PublishError};
use crate::event::Envelope;
use crate::util::BoxFuture;

/// Who retries a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// The bus waits the backoff and tries again in this process.
    InProcess,
    /// The bus makes one attempt; a retryable failure comes back as
    /// [`OutcomeStatus::RetryScheduled`](crate::OutcomeStatus::RetryScheduled) and the
    /// backend schedules the next attempt (so a worker is never blocked by a backoff).
    ByBackend,
}

/// One envelope to deliver.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event.
    pub envelope: Envelope,
    /// Only this handler (a retry or a redelivered dead letter), instead of every match.
    pub handler: Option<String>,
    /// Who retries.
    pub retries: Retries,
}

impl Delivery {
    /// Every matching handler, retries in process.
    pub fn new(envelope: Envelope) -> Self {
        Delivery {
            envelope,
            handler: None,
            retries: Retries::InProcess,
        }
    }
}

/// Receives envelopes from a backend and runs their handlers; the returned future settles
/// when every handler's outcome is final for this delivery.
pub trait DeliverySink: Send + Sync + 'static {
    /// Delivers one envelope.
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'static, DeliveryReport>;
    /// Whether an event no handler matches may be acknowledged as done (the bus was built
    /// with [`allow_unhandled`](crate::EventBusBuilder::allow_unhandled)). When not, a
    /// network backend leaves such an entry for another worker
    /// ([`broker::unrouted`]).
    fn allows_unhandled(&self) -> bool {
        false
    }
}

/// What a backend reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendHealth {
    /// Whether the backend answers.
    pub reachable: bool,
    /// Entries not yet read by this worker's group, where the backend knows.
    pub lag: Option<u64>,
    /// Entries read but not acknowledged, where the backend knows.
    pub pending: Option<u64>,
    /// Dead letters kept, where the backend knows.
    pub dead_letters: Option<u64>,
    /// What went wrong, if anything.
    pub detail: Option<String>,
}

impl BackendHealth {
    /// A backend that answers (`true`) or not; the figures are unknown until set.
    pub fn new(reachable: bool) -> Self {
        BackendHealth {
            reachable,
            ..Self::default()
        }
    }

    /// Entries not yet read by this worker's group.
    pub fn with_lag(mut self, lag: Option<u64>) -> Self {
        self.lag = lag;
        self
    }

    /// Entries read but not acknowledged.
    pub fn with_pending(mut self, pending: Option<u64>) -> Self {
        self.pending = pending;
        self
    }

    /// Dead letters kept.
    pub fn with_dead_letters(mut self, dead_letters: Option<u64>) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// What went wrong.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A worker reading a network backend's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its consumer name.
    pub name: String,
    /// Entries it read and has not acknowledged.
    pub pending: u64,
    /// How long since it last read or acknowledged.
    pub idle: Duration,
}

impl WorkerInfo {
    /// A worker.
    pub fn new(name: impl Into<String>, pending: u64, idle: Duration) -> Self {
        WorkerInfo {
            name: name.into(),
            pending,
            idle,
        }
    }
}

/// A transport for events. See the [module documentation](self).
pub trait Backend: Send + Sync + 'static {
    /// A short name (`memory`, `redis`).
    fn name(&self) -> &'static str;
    /// Attaches the sink envelopes are delivered into. Called once, when the bus is built.
    fn start(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>>;
    /// Begins taking envelopes from the transport (a worker). The memory backend delivers
    /// from the start; network backends only consume after this.
    fn consume(&self) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async { Ok(()) })
    }
    /// Accepts an envelope; returns once it is accepted, not once it is handled.
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), PublishError>>;
    /// Accepts an envelope for delivery after `delay`.
    fn publish_delayed(
        &self,
        envelope: Envelope,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), PublishError>>;
    /// Queues a delivery of `envelope` to one handler only (a dead letter being retried).
    /// Returns `false` if this backend does not queue such deliveries, and the bus then
    /// delivers in process.
    fn requeue(
        &self,
        _envelope: Envelope,
        _handler: String,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        Box::pin(async { Ok(false) })
    }
    /// Publishes `envelope` as a request ([`EventBus::request`](crate::EventBus::request))
    /// and waits up to `timeout` for the answer of whichever process handles it:
    /// `Ok(None)` when none came in time. The backend sets the envelope's
    /// [`reply_to`](Envelope::reply_to) to where it waits, and its workers send
    /// [`Reply::from_report`] there once the answer is final; an answer that comes after
    /// the asker stopped waiting is dropped, and what the backend keeps for replies
    /// expires. Returns `None` when this backend carries no replies: the bus then delivers
    /// the request in this process.
    #[allow(clippy::type_complexity)]
    fn request(
        &self,
        _envelope: Envelope,
        _timeout: Duration,
    ) -> Option<BoxFuture<'_, Result<Option<Reply>, PublishError>>> {
        None
    }
    /// A page of the events waiting for their time, soonest first: at most `limit` (1 to
    /// [`MAX_DELAYED_PAGE`]) from `cursor` (the `next` of the page before). The default
    /// lists none.
    fn delayed(
        &self,
        _cursor: Option<&str>,
        _limit: usize,
    ) -> BoxFuture<'_, Result<DelayedPage, ConnectionError>> {
        Box::pin(async { Ok(DelayedPage::default()) })
    }
    /// Cancels the waiting event `id` (every entry of it: a publish, or retries for
    /// several handlers): it will not be delivered. `false` when none waits. The default
    /// cancels nothing.
    fn cancel_delayed(
        &self,
        _id: crate::event::EventId,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        Box::pin(async { Ok(false) })
    }
    /// The workers reading this backend's queue (a network backend's consumers), with their
    /// idle time and pending entries. The default knows none.
    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, ConnectionError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Whether this backend delivers without [`consume`](Self::consume) (the memory
    /// backend). Scheduled functions start at build on such a backend, and at
    /// [`EventBus::start`](crate::EventBus::start) otherwise.
    fn delivers_without_consume(&self) -> bool {
        false
    }
    /// Whether processes other than this one may take what [`publish`](Self::publish)
    /// accepts (a network backend; by default, a backend that needs
    /// [`consume`](Self::consume)). Publish then cannot know whether some process has a
    /// handler for an event, so the bus does not refuse one that none of its own handlers
    /// matches ([`NoHandler`](crate::NoHandler)); the worker that reads it judges
    /// ([`broker::unrouted`]).
    fn shared(&self) -> bool {
        !self.delivers_without_consume()
    }
    /// Claims the run of scheduled function `schedule` at `tick_ms` (milliseconds since the
    /// Unix epoch) for this process. Among processes sharing the backend, at most one gets
    /// `true` for a tick, and a tick earlier than one already claimed is refused. The
    /// default grants every tick (one process).
    fn claim_tick(
        &self,
        _schedule: &str,
        _tick_ms: u64,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        Box::pin(async { Ok(true) })
    }
    /// The last tick of `schedule` any process claimed, where the backend remembers it.
    fn last_tick(&self, _schedule: &str) -> BoxFuture<'_, Result<Option<u64>, ConnectionError>> {
        Box::pin(async { Ok(None) })
    }
    /// Stops taking envelopes from the transport (in-flight deliveries go on).
    fn stop(&self) -> BoxFuture<'_, ()>;
    /// Finishes what follows the deliveries (acknowledgements), once they are done.
    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Where dead letters are kept.
    fn dead_letters(&self) -> Arc<dyn DeadLetterStore>;
    /// Reachability and queue figures.
    fn health(&self) -> BoxFuture<'_, BackendHealth>;
}

/// Settings a backend connects from when the bus is built
/// ([`EventBusBuilder::backend_config`](crate::EventBusBuilder::backend_config)). A backend
/// package implements it for its configuration type and adds builder methods that fill it
/// through [`EventBusBuilder::backend_config_mut`](crate::EventBusBuilder::backend_config_mut).
pub trait BackendConfig: std::any::Any + Send + 'static {
    /// Connects to the broker and returns the backend.
    fn connect(self: Box<Self>) -> BoxFuture<'static, Result<Arc<dyn Backend>, EventError>>;
}

pub mod broker;
mod delayed;
mod memory;
mod queue;

pub use delayed::{DelayedEvent, DelayedPage, MAX_DELAYED_PAGE};
pub use memory::{DEFAULT_MAX_WAITING, MemoryBackend, WhenFull};
pub use queue::DEFAULT_WORKERS;
