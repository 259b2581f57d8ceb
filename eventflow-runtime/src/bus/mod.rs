//! The event bus: publish, dispatch, deliver with retries and timeouts, dead letters,
//! shutdown.
//!
//! One concept per file: [`builder`] configures and [`validate`] checks what a bus is built
//! from; [`compiled`] is a handler as the bus runs it; [`publish`] accepts events and
//! [`request`] waits for a handler's value; [`deliver`] runs their handlers, one [`attempt`] at a time; [`batch`] collects events for
//! batched handlers; [`inflight`] tracks deliveries for shutdown; [`sink`] is where backends
//! deliver into; [`spans`] gives each step its tracing span; [`scheduler`] and [`timer`]
//! run scheduled functions and timers; [`registry`] is what the macros registered;
//! [`handler`] and [`recorder`] define handlers and the testing recorder.
//!
//! The one knot of the crate's layering is here: handlers take contexts, and contexts hold
//! the bus.

mod attempt;
pub mod batch;
mod builder;
mod command;
mod compiled;
mod config;
mod context;
mod deliver;
mod gate;
mod handler;
mod inflight;
mod info;
mod options;
mod process;
mod publish;
mod recorder;
mod registry;
mod request;
mod routing;
mod scheduler;
mod sink;
mod spans;
mod subscribe;
mod timer;
mod validate;

pub use batch::{BatchConfig, BatchContext, BatchError, BatchInvoke, check_payload};
pub use builder::{DEFAULT_BLOCKING_THREADS, EventBusBuilder};
pub use config::{BusConfig, HandlerOverrides, NoBackend};
pub(crate) use context::Publisher;
pub use handler::{
    AsyncInvoke, BlockingInvoke, FilterFn, Handler, HandlerContext, HandlerOptions, Invoke,
    decode_event,
};
pub use inflight::{ShutdownReport, UnfinishedDelivery};
pub use info::HandlerInfo;
pub use recorder::{RecordedOutcome, Recorder};
pub use registry::{EventRecord, HandlerRecord, Registry};
pub use request::DEFAULT_REQUEST_TIMEOUT;
pub use scheduler::{
    ScheduleContext, ScheduledJob, ScheduledJobInvoke, ScheduledJobRecord, ScheduledJobStats,
};
#[allow(deprecated)]
pub use scheduler::{ScheduleStats, Scheduled, ScheduledRecord};
pub use subscribe::Subscription;
pub use timer::TimerHandle;
pub(crate) use validate::StartupCheck;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::deliver::{OwnTask, deliver_to};
use self::inflight::InFlight;
use self::scheduler::Scheduler;
use crate::backend::{Backend, BackendHealth, Retries};
use crate::dead_letter::{DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterStore};
use crate::delivery::Redelivery;
use crate::error::EventError;
use crate::event::Headers;
use crate::telemetry::{MetricsSnapshot, Telemetry};

struct Inner {
    /// The handlers and their router, swapped whole by `subscribe` and `unsubscribe`.
    routing: arc_swap::ArcSwap<routing::Routing>,
    /// Held while the routing table changes, so that changes do not overwrite each other.
    changing_routes: std::sync::Mutex<()>,
    /// What a handler subscribed on the running bus is compiled with.
    compile: compiled::CompileSettings,
    backend: Arc<dyn Backend>,
    dead_letters: Arc<dyn DeadLetterStore>,
    allow_unhandled: bool,
    /// Whether the backend may hand published events to other processes
    /// ([`Backend::shared`]).
    shared_backend: bool,
    shutdown_timeout: Duration,
    headers: Headers,
    accepting: AtomicBool,
    /// The pool plain functions run on.
    blocking: crate::executor::ThreadPool,
    /// Set by the first [`EventBus::shutdown`]; a later call returns at once.
    shutting_down: AtomicBool,
    published: AtomicU64,
    seq: AtomicU64,
    inflight: InFlight,
    cancel: CancellationToken,
    recorder: Option<Recorder>,
    runtime: tokio::runtime::Handle,
    telemetry: Telemetry,
    schedules: Scheduler,
}
/// The event bus. Cheap to clone: clones share one bus.
///
/// ```
/// use eventflow_runtime::{EventBus, Handler, HandlerError};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> eventflow_runtime::Result<()> {
/// let bus = EventBus::builder()
///     .without_registry()
///     .handler(Handler::new("greeter", "user.*", |env, _ctx| async move {
///         println!("hello from {}", env.name);
///         Ok::<(), HandlerError>(())
///     }))
///     .build()
///     .await?;
/// let report = bus.dispatch_raw("user.created", serde_json::json!({"id": 1})).await?;
/// assert!(report.is_success());
/// bus.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl EventBus {
    /// A builder with the defaults: memory backend, every registered handler.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::default()
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    fn upgrade(weak: &Weak<Inner>) -> Option<EventBus> {
        weak.upgrade().map(|inner| EventBus { inner })
    }

    pub(crate) fn schedules(&self) -> &Scheduler {
        &self.inner.schedules
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Starts consuming events from the backend (a worker), and the scheduled functions.
    /// Needed with network backends; the memory backend delivers (and runs scheduled
    /// functions) from the start, so this does nothing there.
    pub async fn start(&self) -> Result<(), EventError> {
        self.inner.backend.consume().await?;
        self.inner.schedules.start(self);
        Ok(())
    }

    /// What each scheduled function of this bus did, by name.
    pub fn schedule_stats(&self) -> Vec<ScheduledJobStats> {
        self.inner.schedules.stats()
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, EventError> {
        Ok(self.inner.dead_letters.list().await?)
    }

    /// One page of dead letters, filtered by handler and event name; the page's `next`
    /// cursor gives the page after it. Bounded work per call, whatever the store's size.
    pub async fn dead_letters_page(
        &self,
        query: &DeadLetterQuery,
    ) -> Result<DeadLetterPage, EventError> {
        Ok(self.inner.dead_letters.page(query).await?)
    }

    /// Delivers a dead letter again to the handler that gave up on it, attempts starting
    /// over. With a backend that queues such deliveries (Redis) it is queued for any worker
    /// that has the handler; otherwise it runs here and its outcome is returned. If it fails
    /// again it goes back to dead letters under a new id.
    pub async fn retry_dead_letter(&self, id: uuid::Uuid) -> Result<Redelivery, EventError> {
        let store = &self.inner.dead_letters;
        let letter = store
            .take(id)
            .await?
            .ok_or(EventError::DeadLetterNotFound(id))?;
        let mut envelope = letter.envelope.clone();
        envelope.attempt = 1;
        match self
            .inner
            .backend
            .requeue(envelope.clone(), letter.handler.clone())
            .await
        {
            Ok(true) => return Ok(Redelivery::Queued),
            Ok(false) => {}
            Err(e) => {
                store.put(letter).await?;
                return Err(e.into());
            }
        }
        let routing = self.inner.routing.load_full();
        let Some(slot) = routing.named(&letter.handler) else {
            let handler = letter.handler.clone();
            store.put(letter).await?;
            return Err(EventError::UnknownHandler(handler));
        };
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        Ok(Redelivery::Done(
            deliver_to(
                &self.inner,
                slot,
                &envelope,
                seq,
                OwnTask::No,
                Retries::InProcess,
            )
            .await,
        ))
    }

    /// Removes a dead letter; `false` if there was none with this id.
    pub async fn remove_dead_letter(&self, id: uuid::Uuid) -> Result<bool, EventError> {
        Ok(self.inner.dead_letters.take(id).await?.is_some())
    }

    /// The names of this bus's handlers, in the order they run for one event.
    pub fn handler_names(&self) -> Vec<String> {
        let routing = self.inner.routing.load();
        routing
            .handlers
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    }

    /// Handlers whose pattern matches `name`, in the order they run.
    pub fn handlers_for(&self, name: &str) -> Vec<String> {
        let routing = self.inner.routing.load();
        routing
            .router
            .lookup(name)
            .iter()
            .map(|&i| routing.handlers[i].name.to_string())
            .collect()
    }

    /// Deliveries waiting for a free slot of the named handler (its `concurrency` limit).
    pub fn waiting(&self, handler: &str) -> usize {
        self.inner
            .routing
            .load()
            .named(handler)
            .and_then(|s| s.gate.as_ref())
            .map_or(0, |g| g.waiting())
    }

    /// A snapshot of what the bus did: events published, and per handler the events
    /// delivered, succeeded, failed attempts, retries, dead letters and filtered events,
    /// with success rates.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            published: self.inner.published.load(Ordering::Relaxed),
            in_flight: self.in_flight() as u64,
            handlers: self
                .inner
                .routing
                .load()
                .handlers
                .iter()
                .map(|s| s.counters.snapshot(&s.name))
                .collect(),
            blocking_threads: (
                self.inner.blocking.busy(),
                self.inner.blocking.max_threads(),
            ),
        }
    }

    /// Events being delivered right now.
    pub fn in_flight(&self) -> usize {
        self.inner.inflight.lock().count
    }

    /// The backend's reachability and queue figures.
    pub async fn health(&self) -> BackendHealth {
        self.inner.backend.health().await
    }

    /// A listing of the bus's handlers and their patterns.
    pub fn describe(&self) -> String {
        let mut out = format!("eventflow bus on {} backend:\n", self.inner.backend.name());
        for s in &self.inner.routing.load().handlers {
            out.push_str(&format!(
                "  {} <- {} ({:?}, {} attempt(s))\n",
                s.name, s.pattern, s.options.executor, s.options.retry.max_attempts
            ));
        }
        for name in self.inner.schedules.names() {
            out.push_str(&format!("  {name} (scheduled)\n"));
        }
        out
    }

    /// Stops accepting events, waits for in-flight deliveries up to the shutdown timeout,
    /// then cancels the published events still being delivered and reports every delivery
    /// that did not finish. (A [`dispatch`](Self::dispatch) still running is reported but
    /// not cancelled: its caller owns it.) Publishing afterwards fails with
    /// [`PublishError::ShutDown`](crate::PublishError::ShutDown), follow-up events published by handlers during the drain
    /// included. Calling it again (while the first call drains, or after) returns at once
    /// with an empty report: the first call's report is the one that counts.
    pub async fn shutdown(&self) -> Result<ShutdownReport, EventError> {
        let inner = &self.inner;
        if inner.shutting_down.swap(true, Ordering::AcqRel) {
            return Ok(ShutdownReport::default());
        }
        // Scheduled runs still going may publish, so they end before publishing does.
        inner.schedules.stop(inner.shutdown_timeout).await;
        inner.accepting.store(false, Ordering::Release);
        inner.backend.stop().await;
        if tokio::time::timeout(inner.shutdown_timeout, inner.inflight.wait_idle())
            .await
            .is_ok()
        {
            inner.backend.flush().await;
            return Ok(ShutdownReport::default());
        }
        let unfinished = inner.inflight.snapshot();
        tracing::warn!(
            count = unfinished.len(),
            "eventflow: shutdown timed out; cancelling unfinished deliveries"
        );
        inner.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.inflight.wait_idle()).await;
        inner.backend.flush().await;
        Ok(ShutdownReport { unfinished })
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("backend", &self.inner.backend.name())
            .field("handlers", &self.handler_names())
            .finish_non_exhaustive()
    }
}
