//! The event bus: publish, dispatch, deliver with retries and timeouts, dead letters,
//! shutdown.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{Backend, BackendHealth, Delivery, DeliverySink, MemoryBackend, Retries};
use crate::batch::{Added, BatchContext, BatchError, Batcher, Waiting};
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::error::{EventError, HandlerError, NoHandler, PublishError, ValidationError};
use crate::event::{Envelope, Event, EventId, EventName, Headers, Payload, TraceContext};
use crate::executor::{Executor, ThreadPool, panic_message};
use crate::gate::PriorityGate;
use crate::handler::{BoxFuture, Handler, HandlerContext, HandlerFn, HandlerOptions};
use crate::pattern::{Pattern, Router, validate_name};
use crate::registry::{Registry, check_handlers};
use crate::schedule::{ScheduleStats, Scheduled, Schedules};
use crate::stats::{HandlerCounters, MetricsSnapshot};
use crate::telemetry::{Hex, SlotMetrics, Tally, Telemetry, random_u64};
use crate::testing::Recorder;

/// How one handler's delivery of one event ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeStatus {
    /// An attempt succeeded.
    Succeeded,
    /// The handler gave up; the event is in dead letters under `dead_letter_id`.
    DeadLettered {
        /// The dead letter's id.
        dead_letter_id: uuid::Uuid,
        /// The last attempt's error.
        error: HandlerError,
    },
    /// The handler's filter rejected the event; it was not delivered to it.
    Filtered,
    /// The delivery was cancelled by shutdown before it finished.
    Cancelled,
    /// The attempt failed and the backend schedules the next one after `delay` (backends
    /// that retry through the broker, see [`Retries::ByBackend`]).
    RetryScheduled {
        /// The wait before the next attempt.
        delay: Duration,
        /// The failed attempt's error.
        error: HandlerError,
    },
}

/// The outcome of one handler for one event.
#[derive(Debug)]
pub struct HandlerOutcome {
    /// The handler's name.
    pub handler: Arc<str>,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub status: OutcomeStatus,
}

impl HandlerOutcome {
    /// Whether the handler succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, OutcomeStatus::Succeeded)
    }

    /// Whether the handler's filter rejected the event.
    pub fn is_filtered(&self) -> bool {
        matches!(self.status, OutcomeStatus::Filtered)
    }

    /// The final error, if the handler gave up.
    pub fn error(&self) -> Option<&HandlerError> {
        match &self.status {
            OutcomeStatus::DeadLettered { error, .. }
            | OutcomeStatus::RetryScheduled { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Every handler's outcome for one event, in the order the handlers ran.
#[derive(Debug)]
pub struct DeliveryReport {
    /// The event's id.
    pub event_id: EventId,
    /// The event's name.
    pub event: EventName,
    /// One entry per matching handler.
    pub outcomes: Vec<HandlerOutcome>,
    /// Shutdown cancelled the delivery before every handler finished.
    pub cancelled: bool,
}

impl DeliveryReport {
    /// Whether every handler succeeded (or filtered the event out).
    pub fn is_success(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| o.succeeded() || o.is_filtered())
    }

    /// The outcome of the named handler.
    pub fn outcome(&self, handler: &str) -> Option<&HandlerOutcome> {
        self.outcomes.iter().find(|o| &*o.handler == handler)
    }

    /// The handlers that did not succeed (filtered ones excluded).
    pub fn failures(&self) -> impl Iterator<Item = &HandlerOutcome> {
        self.outcomes
            .iter()
            .filter(|o| !o.succeeded() && !o.is_filtered())
    }
}

/// What [`EventBus::retry_dead_letter`] did.
#[derive(Debug)]
pub enum Redelivery {
    /// Delivered in this process; the handler's outcome.
    Done(HandlerOutcome),
    /// Queued in the backend for a worker that has the handler.
    Queued,
}

impl Redelivery {
    /// The outcome, when it was delivered here.
    pub fn outcome(&self) -> Option<&HandlerOutcome> {
        match self {
            Redelivery::Done(o) => Some(o),
            Redelivery::Queued => None,
        }
    }
}

/// A delivery still running when shutdown's timeout ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedDelivery {
    /// The event's id.
    pub event_id: EventId,
    /// The event's name.
    pub event: String,
}

/// What [`EventBus::shutdown`] found.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    /// Deliveries that did not finish within the timeout; they were cancelled.
    pub unfinished: Vec<UnfinishedDelivery>,
}

impl ShutdownReport {
    /// Whether everything in flight finished in time.
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty()
    }
}

/// Configures and builds an [`EventBus`].
#[must_use]
pub struct EventBusBuilder {
    use_registry: bool,
    only: Option<Vec<String>>,
    extra: Vec<Handler>,
    allow_unhandled: bool,
    shutdown_timeout: Duration,
    backend: Option<Arc<dyn Backend>>,
    recorder: Option<Recorder>,
    headers: Headers,
    metrics: bool,
    tracing: bool,
    schedules: bool,
    extra_schedules: Vec<Scheduled>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_backend::RedisConfig>,
}

impl Default for EventBusBuilder {
    fn default() -> Self {
        EventBusBuilder {
            use_registry: true,
            only: None,
            extra: Vec::new(),
            allow_unhandled: false,
            shutdown_timeout: Duration::from_secs(30),
            backend: None,
            recorder: None,
            headers: Headers::new(),
            metrics: true,
            tracing: true,
            schedules: true,
            extra_schedules: Vec::new(),
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl EventBusBuilder {
    /// Leaves out every handler of the registry; only handlers added with
    /// [`handler`](Self::handler) run.
    pub fn without_registry(mut self) -> Self {
        self.use_registry = false;
        self
    }

    /// Takes only the named handlers from the registry (unknown names fail the build).
    pub fn only<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a handler defined at run time.
    pub fn handler(mut self, handler: Handler) -> Self {
        self.extra.push(handler);
        self
    }

    /// Accepts events no handler matches instead of failing with [`NoHandler`].
    pub fn allow_unhandled(mut self, allow: bool) -> Self {
        self.allow_unhandled = allow;
        self
    }

    /// How long [`EventBus::shutdown`] waits for in-flight work (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Uses this backend instead of the in-memory one.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Uses Redis Streams at `url` (`redis://[:password@]host:port/db`, or `rediss://`).
    /// See [`redis_backend`](crate::redis_backend).
    #[cfg(feature = "redis")]
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_cfg().url = url.into();
        self
    }

    /// Every setting of the Redis backend at once.
    #[cfg(feature = "redis")]
    pub fn redis_config(mut self, config: crate::redis_backend::RedisConfig) -> Self {
        self.redis = Some(config);
        self
    }

    #[cfg(feature = "redis")]
    fn redis_cfg(&mut self) -> &mut crate::redis_backend::RedisConfig {
        self.redis.get_or_insert_with(|| {
            crate::redis_backend::RedisConfig::new("redis://127.0.0.1:6379/0")
        })
    }

    /// The Redis key prefix and stream namespace (default `eventflow`).
    #[cfg(feature = "redis")]
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.redis_cfg().queue = name.into();
        self
    }

    /// The Redis consumer group: workers of one group share the work (default `workers`).
    #[cfg(feature = "redis")]
    pub fn consumer_group(mut self, name: impl Into<String>) -> Self {
        self.redis_cfg().group = name.into();
        self
    }

    /// Publisher connections to Redis: `min` opened at build, at most `max`.
    #[cfg(feature = "redis")]
    pub fn pool(mut self, min: usize, max: usize) -> Self {
        let cfg = self.redis_cfg();
        cfg.pool_min = min;
        cfg.pool_max = max;
        self
    }

    /// Records every published event and every handler outcome (for tests).
    pub fn recorder(mut self, recorder: &Recorder) -> Self {
        self.recorder = Some(recorder.clone());
        self
    }

    /// A header added to every event published on this bus (unless the event sets it).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// Reports to the [`metrics`] facade (default on; see [`telemetry`](crate::telemetry)
    /// for the names). [`EventBus::metrics`] counts either way.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Creates `tracing` spans for publishes, deliveries and attempts, and gives each
    /// published event a W3C trace context (default on). Off, events still carry the trace
    /// context they were published with.
    pub fn tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }

    /// Runs scheduled functions (default on): the registered ones (unless
    /// [`without_registry`](Self::without_registry)) and those added with
    /// [`scheduled`](Self::scheduled). Off, none runs: for processes that only publish, or
    /// tests. See [`schedule`](crate::schedule).
    pub fn schedules(mut self, on: bool) -> Self {
        self.schedules = on;
        self
    }

    /// Adds a scheduled function defined at run time.
    pub fn scheduled(mut self, scheduled: Scheduled) -> Self {
        self.extra_schedules.push(scheduled);
        self
    }

    /// Validates everything and starts the bus. Must run inside a tokio runtime.
    ///
    /// Fails with one [`ValidationError`] listing every problem: two handlers with one
    /// name, two event types with one name, invalid patterns or options, unknown names
    /// given to [`only`](Self::only).
    pub async fn build(self) -> Result<EventBus, EventError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ValidationError {
            problems: vec!["EventBus::build must be called inside a tokio runtime".into()],
        })?;
        if self.metrics {
            crate::telemetry::calibrate_clock();
        }
        let registry = Registry::global();
        let mut problems = Vec::new();
        let mut handlers: Vec<Handler> = Vec::new();
        if self.use_registry {
            // Handler problems are checked below, on the handlers this bus actually uses.
            problems.extend(registry.event_problems());
            problems.extend(crate::model::model_problems());
            match &self.only {
                None => {
                    handlers.extend(registry.handlers().iter().map(|r| Handler::from_record(r)))
                }
                Some(names) => {
                    for n in names {
                        match registry.handler(n) {
                            Some(r) => handlers.push(Handler::from_record(r)),
                            None => problems.push(format!(
                                "`only` names `{n}`, which is not a registered handler"
                            )),
                        }
                    }
                }
            }
        }
        handlers.extend(self.extra);
        problems.extend(check_handlers(handlers.iter().map(|h| {
            (
                h.name.as_str(),
                h.pattern.as_str(),
                &h.options,
                h.source.clone(),
            )
        })));
        for h in &handlers {
            if matches!(h.func, HandlerFn::Blocking(_)) && h.options.executor == Executor::Tokio {
                problems.push(format!(
                    "handler `{}` ({}) is a blocking fn and cannot run on the Tokio executor; use ThreadPool or Inline",
                    h.name, h.source
                ));
            }
            if h.options.executor == Executor::Process {
                problems.push(format!(
                    "handler `{}` ({}): the Process executor runs pipeline steps; a handler runs on Inline, Tokio or ThreadPool",
                    h.name, h.source
                ));
            }
            problems.extend(batch_problems(h));
        }
        let mut schedules = Vec::new();
        if self.schedules {
            if self.use_registry {
                for r in registry.scheduled() {
                    match Scheduled::from_record(r) {
                        Ok(s) => schedules.push(s),
                        Err(reason) => problems.push(format!(
                            "scheduled function `{}` ({}:{}): {reason}",
                            r.name, r.location.file, r.location.line
                        )),
                    }
                }
            }
            schedules.extend(self.extra_schedules);
            schedules.sort_by(|a, b| a.name.cmp(&b.name));
            for pair in schedules.windows(2) {
                if pair[0].name == pair[1].name {
                    problems.push(format!(
                        "two scheduled functions are named `{}`: at {} and at {}",
                        pair[0].name, pair[0].source, pair[1].source
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(ValidationError { problems }.into());
        }
        // Higher priority first, then by name, so the order is stable.
        handlers.sort_by(|a, b| {
            b.options
                .priority
                .cmp(&a.options.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut router = Router::new();
        let mut slots = Vec::with_capacity(handlers.len());
        for (i, h) in handlers.into_iter().enumerate() {
            // Checked above, so parsing cannot fail here; skip defensively if it does.
            let Ok(pattern) = Pattern::parse(&h.pattern) else {
                continue;
            };
            router.insert(&pattern, i);
            slots.push(Slot::new(h, pattern, self.metrics));
        }
        #[cfg(feature = "redis")]
        let backend: Arc<dyn Backend> = match (self.backend, self.redis) {
            (Some(b), _) => b,
            (None, Some(cfg)) => Arc::new(crate::redis_backend::RedisBackend::connect(cfg).await?),
            (None, None) => Arc::new(MemoryBackend::new()),
        };
        #[cfg(not(feature = "redis"))]
        let backend = self
            .backend
            .unwrap_or_else(|| Arc::new(MemoryBackend::new()));
        let inner = Arc::new(Inner {
            dead_letters: backend.dead_letters(),
            handlers: slots,
            router,
            backend: backend.clone(),
            allow_unhandled: self.allow_unhandled,
            shutdown_timeout: self.shutdown_timeout,
            headers: self.headers,
            accepting: AtomicBool::new(true),
            published: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            inflight: InFlight::default(),
            cancel: CancellationToken::new(),
            recorder: self.recorder,
            runtime,
            telemetry: Telemetry::new(self.metrics, self.tracing),
            schedules: Schedules::new(schedules),
        });
        backend
            .start(Arc::new(BusSink(Arc::downgrade(&inner))))
            .await?;
        let bus = EventBus { inner };
        if backend.delivers_without_consume() {
            bus.inner.schedules.start(&bus);
        }
        Ok(bus)
    }
}

/// What is wrong with a handler's batching settings.
fn batch_problems(h: &Handler) -> Vec<String> {
    let mut problems = Vec::new();
    let batched = matches!(h.func, HandlerFn::Batch { .. });
    match (&h.options.batch, batched) {
        (Some(cfg), true) => {
            if cfg.max_size == 0 {
                problems.push(format!(
                    "handler `{}` ({}): a batch's max_size must be at least 1",
                    h.name, h.source
                ));
            }
            if !matches!(h.options.executor, Executor::Inline | Executor::Tokio) {
                problems.push(format!(
                    "handler `{}` ({}): a batched handler runs on a tokio task; it takes no executor",
                    h.name, h.source
                ));
            }
        }
        (None, true) => problems.push(format!(
            "handler `{}` ({}) takes batches but has no batch settings",
            h.name, h.source
        )),
        (Some(_), false) => problems.push(format!(
            "handler `{}` ({}) has batch settings but takes one event at a time",
            h.name, h.source
        )),
        (None, false) => {}
    }
    problems
}

struct Slot {
    name: Arc<str>,
    pattern: Pattern,
    options: HandlerOptions,
    func: HandlerFn,
    gate: Option<Arc<PriorityGate>>,
    pool: Option<ThreadPool>,
    filter: Option<Arc<crate::handler::DynFilter>>,
    counters: HandlerCounters,
    metrics: Option<SlotMetrics>,
    batcher: Option<Batcher>,
}

impl Slot {
    fn new(h: Handler, pattern: Pattern, metrics: bool) -> Self {
        let name: Arc<str> = h.name.into();
        Slot {
            metrics: metrics.then(|| SlotMetrics::new(name.clone())),
            name,
            pattern,
            gate: h.options.concurrency.map(PriorityGate::new),
            batcher: h.options.batch.map(Batcher::new),
            pool: (h.options.executor == Executor::ThreadPool)
                .then(|| ThreadPool::new(h.options.executor_config.clone())),
            options: h.options,
            func: h.func,
            filter: h.filter,
            counters: Default::default(),
        }
    }

    /// Inline async handlers run on the delivering task; everything else on its own task.
    /// A batched handler's delivery only waits for its batch, so it runs inline too.
    fn runs_inline(&self) -> bool {
        match self.func {
            HandlerFn::Async(_) => self.options.executor == Executor::Inline,
            HandlerFn::Batch { .. } => true,
            HandlerFn::Blocking(_) => false,
        }
    }
}

#[derive(Default)]
struct InFlight {
    state: Mutex<InFlightState>,
    idle: Notify,
    /// Set once something waits for idleness; until then `leave` skips the notification.
    draining: AtomicBool,
}

#[derive(Default)]
struct InFlightState {
    entries: Vec<Option<(EventId, EventName)>>,
    free: Vec<usize>,
    count: usize,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        // Each critical section is a few assignments; a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enter(&self, env: &Envelope) -> usize {
        let mut st = self.lock();
        st.count += 1;
        let entry = Some((env.id, env.name.clone()));
        match st.free.pop() {
            Some(k) => {
                st.entries[k] = entry;
                k
            }
            None => {
                st.entries.push(entry);
                st.entries.len() - 1
            }
        }
    }

    fn leave(&self, key: usize) {
        let mut st = self.lock();
        st.entries[key] = None;
        st.free.push(key);
        st.count -= 1;
        if st.count == 0 && self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    fn snapshot(&self) -> Vec<UnfinishedDelivery> {
        self.lock()
            .entries
            .iter()
            .flatten()
            .map(|(id, name)| UnfinishedDelivery {
                event_id: *id,
                event: name.to_string(),
            })
            .collect()
    }

    async fn wait_idle(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            if self.lock().count == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard {
    inner: Arc<Inner>,
    key: usize,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.inner.inflight.leave(self.key);
        if self.inner.telemetry.metrics {
            self.inner.telemetry.in_flight.decrement(1.0);
        }
    }
}

/// Gives `envelope` a new span of its trace (a new trace when it has none): returns the
/// trace id, the new span's id and the trace context it descends from.
fn descend(envelope: &mut Envelope) -> (u128, u64, Option<TraceContext>) {
    let span_id = random_u64();
    let parent = envelope.trace;
    let trace = match parent {
        Some(p) => p.child(span_id),
        None => TraceContext::root(span_id),
    };
    envelope.trace = Some(trace);
    (trace.trace_id, span_id, parent)
}

/// The `parent_id` field of a span made by [`descend`].
fn parent_id(parent: Option<TraceContext>) -> Option<tracing::field::DisplayValue<Hex<u64>>> {
    parent.map(|p| tracing::field::display(Hex(p.parent_id)))
}

pub(crate) struct Inner {
    handlers: Vec<Slot>,
    router: Router,
    backend: Arc<dyn Backend>,
    dead_letters: Arc<dyn DeadLetterStore>,
    allow_unhandled: bool,
    shutdown_timeout: Duration,
    headers: Headers,
    accepting: AtomicBool,
    published: AtomicU64,
    seq: AtomicU64,
    inflight: InFlight,
    cancel: CancellationToken,
    recorder: Option<Recorder>,
    runtime: tokio::runtime::Handle,
    telemetry: Telemetry,
    schedules: Schedules,
}

struct BusSink(Weak<Inner>);

impl DeliverySink for BusSink {
    /// Deliveries coming from the backend run on tasks of their own; shutdown cancels the
    /// ones still running when its timeout ends. (A `dispatch` runs in its caller's future,
    /// which the caller owns: shutdown reports it but does not cancel it.)
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'static, DeliveryReport> {
        let Delivery {
            envelope,
            handler,
            retries,
        } = delivery;
        match self.0.upgrade() {
            Some(inner) => {
                let cancel = inner.cancel.clone();
                let (id, name) = (envelope.id, envelope.name.clone());
                let targets: Arc<[usize]> = match &handler {
                    None => inner.router.lookup(&envelope.name),
                    Some(h) => inner
                        .handlers
                        .iter()
                        .position(|s| *s.name == **h)
                        .into_iter()
                        .collect(),
                };
                let work = deliver_routed(inner, envelope, targets, OwnTask::Yes, retries);
                Box::pin(async move {
                    tokio::select! {
                        biased;
                        report = work => report,
                        _ = cancel.cancelled() => DeliveryReport { event_id: id, event: name, outcomes: Vec::new(), cancelled: true },
                    }
                })
            }
            None => Box::pin(std::future::ready(DeliveryReport {
                event_id: envelope.id,
                event: envelope.name,
                outcomes: Vec::new(),
                cancelled: true,
            })),
        }
    }
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

impl EventBus {
    /// A builder with the defaults: memory backend, every registered handler.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::default()
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &Weak<Inner>) -> Option<EventBus> {
        weak.upgrade().map(|inner| EventBus { inner })
    }

    pub(crate) fn schedules(&self) -> &Schedules {
        &self.inner.schedules
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

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
        let (mut envelope, _) = self.accept(envelope)?;
        let span = self.publish_span(&mut envelope);
        Ok(self
            .inner
            .backend
            .publish(envelope)
            .instrument(span)
            .await?)
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
        let (mut envelope, _) = self.accept(envelope)?;
        let span = self.publish_span(&mut envelope);
        Ok(self
            .inner
            .backend
            .publish_delayed(envelope, delay)
            .instrument(span)
            .await?)
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
    pub fn schedule_stats(&self) -> Vec<ScheduleStats> {
        self.inner.schedules.stats()
    }

    /// Delivers an event in this process and waits for every matching handler's outcome
    /// (retries included).
    pub async fn dispatch<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<DeliveryReport, EventError> {
        Ok(self.start_dispatch(Envelope::new(event))?.await)
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
        Ok(self.start_dispatch(envelope)?.await)
    }

    /// Accepts the event and returns its delivery in this process (a plain function, so
    /// that `dispatch` does not nest one more future around the delivery's).
    fn start_dispatch(
        &self,
        envelope: Envelope,
    ) -> Result<impl Future<Output = DeliveryReport> + Send + 'static, EventError> {
        let (envelope, targets) = self.accept(envelope)?;
        Ok(deliver_routed(
            self.inner.clone(),
            envelope,
            targets,
            OwnTask::No,
            Retries::InProcess,
        ))
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
    fn accept(&self, mut envelope: Envelope) -> Result<(Envelope, Arc<[usize]>), EventError> {
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::Acquire) {
            return Err(PublishError::ShutDown {
                name: envelope.name.to_string(),
            }
            .into());
        }
        let targets = inner.router.lookup(&envelope.name);
        if !inner.allow_unhandled && targets.is_empty() {
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
        Ok((envelope, targets))
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, EventError> {
        Ok(self.inner.dead_letters.list().await?)
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
        let Some(idx) = self
            .inner
            .handlers
            .iter()
            .position(|s| *s.name == *letter.handler)
        else {
            let handler = letter.handler.clone();
            store.put(letter).await?;
            return Err(EventError::UnknownHandler(handler));
        };
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        Ok(Redelivery::Done(
            deliver_to(
                &self.inner,
                idx,
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
    pub fn handler_names(&self) -> Vec<&str> {
        self.inner.handlers.iter().map(|s| &*s.name).collect()
    }

    /// Handlers whose pattern matches `name`, in the order they run.
    pub fn handlers_for(&self, name: &str) -> Vec<&str> {
        self.inner
            .router
            .lookup(name)
            .iter()
            .map(|&i| &*self.inner.handlers[i].name)
            .collect()
    }

    /// Deliveries waiting for a free slot of the named handler (its `concurrency` limit).
    pub fn waiting(&self, handler: &str) -> usize {
        self.inner
            .handlers
            .iter()
            .find(|s| &*s.name == handler)
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
                .handlers
                .iter()
                .map(|s| s.counters.snapshot(&s.name))
                .collect(),
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
        for s in &self.inner.handlers {
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
    /// [`PublishError::ShutDown`], follow-up events published by handlers during the drain
    /// included. Calling it again returns at once.
    pub async fn shutdown(&self) -> Result<ShutdownReport, EventError> {
        let inner = &self.inner;
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

/// Registers the delivery as in flight (and takes its place in publish order) at once,
/// before the returned future is first polled, so shutdown sees every accepted event.
/// Whether a delivery already runs on a task of its own (one the backend spawned), so
/// that a lone handler that wants its own task can run right there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OwnTask {
    Yes,
    No,
}

/// Delivers to the handlers at `targets`.
fn deliver_routed(
    inner: Arc<Inner>,
    mut envelope: Envelope,
    targets: Arc<[usize]>,
    own_task: OwnTask,
    retries: Retries,
) -> impl Future<Output = DeliveryReport> + Send + 'static {
    let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
    let key = inner.inflight.enter(&envelope);
    let guard = InFlightGuard {
        inner: inner.clone(),
        key,
    };
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
    deliver_registered(inner, envelope, targets, own_task, retries, seq, guard).instrument(span)
}

async fn deliver_registered(
    inner: Arc<Inner>,
    envelope: Envelope,
    targets: Arc<[usize]>,
    own_task: OwnTask,
    retries: Retries,
    seq: u64,
    _guard: InFlightGuard,
) -> DeliveryReport {
    if targets.is_empty() {
        tracing::debug!(event = %envelope.name, id = %envelope.id, "eventflow: no handler matches");
    }
    // Handlers on other tasks start first, then the inline ones run here, in order. A lone
    // async handler that wants a task of its own runs here when this delivery has one.
    let alone_on_own_task = own_task == OwnTask::Yes
        && targets.len() == 1
        && matches!(inner.handlers[targets[0]].func, HandlerFn::Async(_))
        && inner.handlers[targets[0]].options.executor == Executor::Tokio;
    let runs_here = |i: usize| alone_on_own_task || inner.handlers[i].runs_inline();
    let mut spawned = Vec::new();
    for (pos, &i) in targets.iter().enumerate() {
        if !runs_here(i) {
            let (inner, envelope) = (inner.clone(), envelope.clone());
            let task = tokio::spawn(async move {
                deliver_to(&inner, i, &envelope, seq, OwnTask::Yes, retries).await
            });
            spawned.push((pos, AbortOnDrop(task)));
        }
    }
    let mut outcomes = Vec::with_capacity(targets.len());
    for &i in targets.iter() {
        if runs_here(i) {
            outcomes.push(deliver_to(&inner, i, &envelope, seq, own_task, retries).await);
        }
    }
    if !spawned.is_empty() {
        Box::pin(join_spawned(&inner, &targets, &mut outcomes, spawned)).await;
    }
    DeliveryReport {
        event_id: envelope.id,
        event: envelope.name,
        outcomes,
        cancelled: false,
    }
}

/// Waits for the handlers that run on tasks of their own and puts their outcomes at their
/// places in handler order (`outcomes` holds the inline ones, in order).
async fn join_spawned(
    inner: &Inner,
    targets: &[usize],
    outcomes: &mut Vec<HandlerOutcome>,
    spawned: Vec<(usize, AbortOnDrop<HandlerOutcome>)>,
) {
    for (pos, mut task) in spawned {
        let outcome = match (&mut task.0).await {
            Ok(o) => o,
            Err(_) => HandlerOutcome {
                handler: inner.handlers[targets[pos]].name.clone(),
                attempts: 0,
                status: OutcomeStatus::Cancelled,
            },
        };
        // Positions ascend and every earlier place is filled, so `pos` is the right index.
        outcomes.insert(pos, outcome);
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn deliver_to(
    inner: &Arc<Inner>,
    idx: usize,
    envelope: &Envelope,
    seq: u64,
    own_task: OwnTask,
    retries: Retries,
) -> HandlerOutcome {
    let slot = &inner.handlers[idx];
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
        };
    }
    if let HandlerFn::Batch { check, .. } = &slot.func {
        return Box::pin(deliver_batched(
            inner,
            idx,
            envelope,
            &tally,
            check.as_deref(),
        ))
        .await;
    }
    tally.delivered();
    let mut first_failed_at: Option<SystemTime> = None;
    let mut attempt = envelope.attempt.max(1);
    if tally.timed() && attempt == 1 {
        tally.waited(
            SystemTime::now()
                .duration_since(envelope.timestamp)
                .unwrap_or_default(),
        );
    }
    loop {
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
        let t0 = tally.timed().then(|| crate::telemetry::clock().now());
        let result = match started {
            Ok(fut) => flatten_panic(AssertUnwindSafe(fut.instrument(span)).catch_unwind().await),
            Err(e) => Err(e),
        };
        if let Some(t0) = t0 {
            tally.attempt_took(crate::telemetry::since(t0));
        }
        drop(permit);
        let err = match result {
            Ok(()) => {
                tally.succeeded();
                if let Some(r) = &inner.recorder {
                    r.record_outcome(&slot.name, envelope, attempt, None);
                }
                return HandlerOutcome {
                    handler: slot.name.clone(),
                    attempts: attempt,
                    status: OutcomeStatus::Succeeded,
                };
            }
            Err(err) => err,
        };
        tally.failed_attempts();
        let now = SystemTime::now();
        let first_failed_at = *first_failed_at.get_or_insert(now);
        if slot.options.retry.should_retry(&err, attempt) {
            tally.retried();
            let delay = slot.options.retry.delay(attempt);
            if retries == Retries::ByBackend {
                tracing::warn!(
                    handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, ?delay, error = %err,
                    "eventflow: handler failed; the backend retries it later"
                );
                return HandlerOutcome {
                    handler: slot.name.clone(),
                    attempts: attempt,
                    status: OutcomeStatus::RetryScheduled { delay, error: err },
                };
            }
            tracing::warn!(
                handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, ?delay, error = %err,
                "eventflow: handler failed; retrying"
            );
            Box::pin(tokio::time::sleep(delay)).await;
            attempt += 1;
            continue;
        }
        return Box::pin(give_up(
            inner,
            slot,
            &tally,
            envelope,
            attempt,
            err,
            first_failed_at,
            now,
        ))
        .await;
    }
}

/// Puts the event in its handler's next batch and waits for the batch's outcome.
async fn deliver_batched(
    inner: &Arc<Inner>,
    idx: usize,
    envelope: &Envelope,
    tally: &Tally<'_>,
    check: Option<&crate::batch::DynCheck>,
) -> HandlerOutcome {
    let slot = &inner.handlers[idx];
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
            tokio::spawn(run_batch(inner.clone(), idx, items));
        }
        Added::First(generation) => {
            let (inner, wait) = (inner.clone(), batcher.config.max_wait);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let items = inner.handlers[idx]
                    .batcher
                    .as_ref()
                    .and_then(|b| b.take(generation));
                if let Some(items) = items {
                    run_batch(inner, idx, items).await;
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
        },
    }
}

/// Runs one batch with retries, then tells each of its events how it ended.
async fn run_batch(inner: Arc<Inner>, idx: usize, items: Vec<Waiting>) {
    let slot = &inner.handlers[idx];
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
    let mut attempt = 1;
    let mut first_failed_at = None;
    let failure = loop {
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
        let t0 = tally.timed().then(|| crate::telemetry::clock().now());
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
            tally.attempt_took(crate::telemetry::since(t0));
        }
        let err = match result {
            Ok(()) => break None,
            Err(err) => err,
        };
        tally.failed_attempts();
        let failed_at = *first_failed_at.get_or_insert_with(SystemTime::now);
        if slot.options.retry.should_retry(&err, attempt) {
            tally.retried();
            let delay = slot.options.retry.delay(attempt);
            tracing::warn!(handler = %slot.name, size, attempt, ?delay, error = %err,
                "eventflow: batch failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
            continue;
        }
        break Some((err, failed_at));
    };
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

/// Sends the event to dead letters for this handler and builds the outcome.
#[allow(clippy::too_many_arguments)]
async fn give_up(
    inner: &Inner,
    slot: &Slot,
    tally: &Tally<'_>,
    envelope: &Envelope,
    attempt: u32,
    err: HandlerError,
    first_failed_at: SystemTime,
    failed_at: SystemTime,
) -> HandlerOutcome {
    tracing::error!(
        handler = %slot.name, event = %envelope.name, id = %envelope.id, attempt, error = %err,
        "eventflow: handler gave up; event sent to dead letters"
    );
    tally.dead_lettered();
    let letter = DeadLetter {
        id: uuid::Uuid::new_v4(),
        handler: slot.name.to_string(),
        envelope: envelope.clone(),
        error: err.to_string(),
        error_kind: err.kind(),
        attempts: attempt,
        first_failed_at,
        failed_at,
    };
    let dead_letter_id = letter.id;
    if let Err(store_err) = inner.dead_letters.put(letter).await {
        tracing::error!(handler = %slot.name, id = %envelope.id, error = %store_err,
            "eventflow: could not store a dead letter");
    }
    if let Some(r) = &inner.recorder {
        r.record_outcome(&slot.name, envelope, attempt, Some(err.to_string()));
    }
    HandlerOutcome {
        handler: slot.name.clone(),
        attempts: attempt,
        status: OutcomeStatus::DeadLettered {
            dead_letter_id,
            error: err,
        },
    }
}

async fn bounded<F: Future>(timeout: Option<Duration>, fut: F) -> Result<F::Output, HandlerError> {
    match timeout {
        None => Ok(fut.await),
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| HandlerError::timed_out(t)),
    }
}

fn flatten_panic<T>(r: std::thread::Result<Result<T, HandlerError>>) -> Result<T, HandlerError> {
    r.unwrap_or_else(|p| Err(HandlerError::panicked(panic_message(&*p))))
}

/// Starts one attempt: the handler's own future for an inline async handler (the common
/// case, kept small and free of extra state), a boxed driver for everything else.
///
/// A `Tokio` handler whose delivery already runs on a task of its own is run on that task
/// rather than on yet another one.
fn start_attempt<'a>(
    slot: &'a Slot,
    ctx: HandlerContext,
    runtime: &'a tokio::runtime::Handle,
    own_task: OwnTask,
) -> Result<BoxFuture<'a, Result<(), HandlerError>>, HandlerError> {
    let executor = match slot.options.executor {
        Executor::Tokio if own_task == OwnTask::Yes => Executor::Inline,
        other => other,
    };
    match (&slot.func, executor, slot.options.timeout) {
        (HandlerFn::Batch { .. }, _, _) => Err(HandlerError::permanent_msg(
            "a batched handler runs through its batcher",
        )),
        (HandlerFn::Async(f), Executor::Inline, None) => {
            // Calling `f` may itself panic (a closure's synchronous part).
            flatten_panic(std::panic::catch_unwind(AssertUnwindSafe(|| Ok(f(ctx)))))
        }
        _ => Ok(Box::pin(run_attempt_elsewhere(
            slot, executor, ctx, runtime,
        ))),
    }
}

/// Attempts with a timeout, or on another task, pool or thread.
async fn run_attempt_elsewhere(
    slot: &Slot,
    executor: Executor,
    ctx: HandlerContext,
    runtime: &tokio::runtime::Handle,
) -> Result<(), HandlerError> {
    let timeout = slot.options.timeout;
    match &slot.func {
        HandlerFn::Async(f) => {
            // Calling `f` may itself panic (a closure's synchronous part).
            let fut = flatten_panic(std::panic::catch_unwind(AssertUnwindSafe(|| Ok(f(ctx)))))?;
            match executor {
                Executor::Tokio => {
                    let task = AbortOnDrop(tokio::spawn(bounded(timeout, fut)));
                    let mut task = task;
                    match (&mut task.0).await {
                        Ok(r) => r?,
                        Err(e) if e.is_panic() => {
                            Err(HandlerError::panicked(panic_message(&*e.into_panic())))
                        }
                        Err(_) => Err(HandlerError::cancelled("the handler's task was cancelled")),
                    }
                }
                Executor::ThreadPool => {
                    let rt = runtime.clone();
                    let pool = slot.pool.clone();
                    match pool {
                        Some(pool) => {
                            match pool.run(move || rt.block_on(bounded(timeout, fut))).await {
                                Ok(r) => r?,
                                Err(p) => Err(HandlerError::panicked(p.0)),
                            }
                        }
                        None => Err(HandlerError::cancelled("no thread pool")),
                    }
                }
                _ => flatten_panic(bounded(timeout, AssertUnwindSafe(fut).catch_unwind()).await?),
            }
        }
        HandlerFn::Batch { .. } => Err(HandlerError::permanent_msg(
            "a batched handler runs through its batcher",
        )),
        HandlerFn::Blocking(f) => {
            // The thread cannot be stopped: on timeout the attempt is abandoned and counted
            // as failed while the function runs to its end on its thread.
            let f = f.clone();
            match &slot.pool {
                Some(pool) => match bounded(timeout, pool.run(move || f(ctx))).await? {
                    Ok(r) => r,
                    Err(p) => Err(HandlerError::panicked(p.0)),
                },
                None => {
                    let task = tokio::task::spawn_blocking(move || {
                        std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx)))
                    });
                    match bounded(timeout, task).await? {
                        Ok(r) => flatten_panic(r),
                        Err(_) => Err(HandlerError::cancelled("the blocking task was cancelled")),
                    }
                }
            }
        }
    }
}
