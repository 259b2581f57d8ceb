//! Configures and builds an [`EventBus`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handler::Handler;
use super::inflight::InFlight;
use super::recorder::Recorder;
use super::registry::Registry;
use super::scheduler::{ScheduledJob, Scheduler};
use super::sink::BusSink;
use super::{EventBus, Inner};
use crate::backend::{Backend, BackendConfig, MemoryBackend};
use crate::error::{EventError, Problem, ProblemKind, ValidationError};
use crate::event::Headers;
use crate::executor::{ExecutorConfig, ThreadPool};
use crate::retry::RetryPolicy;
use crate::telemetry::Telemetry;
use crate::util::calibrate_clock;

/// The most threads a bus's pool for plain functions runs at once, by default
/// ([`EventBusBuilder::blocking_threads`]).
pub const DEFAULT_BLOCKING_THREADS: usize = 64;

/// Configures and builds an [`EventBus`].
#[must_use]
pub struct EventBusBuilder {
    use_registry: bool,
    only: Option<Vec<String>>,
    extra: Vec<Handler>,
    allow_unhandled: bool,
    shutdown_timeout: Duration,
    blocking_threads: usize,
    backend: Option<PendingBackend>,
    recorder: Option<Recorder>,
    headers: Headers,
    metrics: bool,
    tracing: bool,
    schedules: bool,
    extra_schedules: Vec<ScheduledJob>,
    default_retry: Option<RetryPolicy>,
    default_timeout: Option<Duration>,
    metric_samples: usize,
    overrides: std::collections::BTreeMap<String, super::config::HandlerOverrides>,
}

impl Default for EventBusBuilder {
    fn default() -> Self {
        EventBusBuilder {
            use_registry: true,
            only: None,
            extra: Vec::new(),
            allow_unhandled: false,
            shutdown_timeout: Duration::from_secs(30),
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            backend: None,
            recorder: None,
            headers: Headers::new(),
            metrics: true,
            tracing: true,
            schedules: true,
            extra_schedules: Vec::new(),
            default_retry: None,
            default_timeout: None,
            metric_samples: crate::telemetry::DEFAULT_METRIC_SAMPLES,
            overrides: Default::default(),
        }
    }
}

impl EventBusBuilder {
    /// Applies a configuration read as data ([`BusConfig`](super::BusConfig)): its backend
    /// settings (when it has a `[backend]` section), defaults, headers, switches and
    /// per-handler overrides. Builder methods called after this one win over it; the
    /// per-handler overrides win over the handlers' own settings, and a name that matches
    /// no handler of the bus fails `build`.
    pub fn config<B: BackendConfig>(mut self, config: super::BusConfig<B>) -> Self {
        if let Some(b) = config.backend {
            self = self.backend_config(b);
        }
        if let Some(t) = config.shutdown_timeout {
            self.shutdown_timeout = t;
        }
        if let Some(r) = config.default_retry {
            self.default_retry = Some(r);
        }
        if let Some(t) = config.default_timeout {
            self.default_timeout = Some(t);
        }
        for (k, v) in config.headers {
            self = self.header(k, v);
        }
        if let Some(a) = config.allow_unhandled {
            self.allow_unhandled = a;
        }
        if let Some(m) = config.metrics {
            self.metrics = m;
        }
        if let Some(t) = config.tracing {
            self.tracing = t;
        }
        if let Some(n) = config.metric_samples {
            self.metric_samples = n;
        }
        if let Some(n) = config.blocking_threads {
            self.blocking_threads = n;
        }
        self.overrides.extend(config.handlers);
        self
    }

    /// How many recent attempt durations (and publish-to-handle times) each handler keeps
    /// for the percentiles of [`EventBus::metrics`] (earnorm's `max_samples`; default
    /// [`DEFAULT_METRIC_SAMPLES`](crate::DEFAULT_METRIC_SAMPLES)). Kept only with
    /// [`metrics`](Self::metrics) on; 16 bytes per sample per handler.
    pub fn metric_samples(mut self, n: usize) -> Self {
        self.metric_samples = n;
        self
    }

    /// The retry policy of every handler that sets none (earnorm's `retry_policy` in
    /// `EVENT_BUS_CONFIG`). Without it, such a handler is tried once.
    pub fn default_retry(mut self, policy: RetryPolicy) -> Self {
        self.default_retry = Some(policy);
        self
    }

    /// The bound on one attempt of every handler that sets none (earnorm's `timeout`).
    /// Without it, such a handler's attempts are not bounded.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

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

    /// Accepts events no handler matches instead of failing with [`NoHandler`](crate::NoHandler).
    ///
    /// Where the check applies: `dispatch` (which runs this bus's handlers) always checks;
    /// `publish` checks on a backend that delivers in this process only (the memory
    /// backend). On a backend other processes read ([`Backend::shared`], Redis), a handler
    /// of another process may take the event, so `publish` accepts it and a process that
    /// only publishes needs no handlers and no `allow_unhandled`; a worker that reads an
    /// event none of its handlers takes leaves it to the other workers of its group, and
    /// after `max_deliveries` sends it to dead letters saying why. With `allow_unhandled`,
    /// such a worker acknowledges it instead.
    pub fn allow_unhandled(mut self, allow: bool) -> Self {
        self.allow_unhandled = allow;
        self
    }

    /// How many threads the bus's pool for plain functions runs at most (default
    /// [`DEFAULT_BLOCKING_THREADS`]). Plain `fn` handlers (except those on the ThreadPool
    /// executor, which have a pool of their own) and plain scheduled functions run there.
    /// Its threads do not keep the process alive: a plain function that never returns
    /// does not hold up the process's exit after [`EventBus::shutdown`]. An attempt that
    /// runs past its `timeout` is abandoned, and keeps its thread until it returns (see
    /// [`HandlerMetrics::abandoned_attempts`](crate::HandlerMetrics::abandoned_attempts)).
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = n.max(1);
        self
    }

    /// How long [`EventBus::shutdown`] waits for in-flight work (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Uses this backend instead of the in-memory one.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(PendingBackend::Ready(Arc::new(backend)));
        self
    }

    /// Uses a backend that connects when the bus is built, from its settings. Backend
    /// packages add builder methods that fill these settings (`eventflow-redis`'s
    /// `.redis(url)`, `.queue(..)`); see [`backend_config_mut`](Self::backend_config_mut).
    /// The last of [`backend`](Self::backend) and this one wins.
    pub fn backend_config(mut self, config: impl BackendConfig) -> Self {
        self.backend = Some(PendingBackend::Config(Box::new(config)));
        self
    }

    /// The pending backend settings of type `C`, made from `C::default()` first when the
    /// builder holds none (or holds a backend of another kind, which they replace): what
    /// a backend package's builder methods call, so that its settings compose in the
    /// order they are written.
    pub fn backend_config_mut<C: BackendConfig + Default>(&mut self) -> &mut C {
        let is_c = matches!(&self.backend, Some(PendingBackend::Config(c)) if (&**c as &dyn std::any::Any).is::<C>());
        if !is_c {
            self.backend = Some(PendingBackend::Config(Box::new(C::default())));
        }
        match &mut self.backend {
            Some(PendingBackend::Config(c)) => match (&mut **c as &mut dyn std::any::Any)
                .downcast_mut::<C>()
            {
                Some(c) => c,
                None => unreachable!("the pending backend settings were just made of this type"),
            },
            _ => unreachable!("the pending backend settings were just set"),
        }
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
    pub fn scheduled(mut self, scheduled: ScheduledJob) -> Self {
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
            problems: vec![Problem::general(
                ProblemKind::Runtime,
                "EventBus::build must be called inside a tokio runtime",
            )],
        })?;
        if self.metrics {
            calibrate_clock();
        }
        let registry = Registry::global();
        let mut problems = Vec::new();
        let mut handlers: Vec<Handler> = Vec::new();
        if self.use_registry {
            // Handler problems are checked below, on the handlers this bus actually uses.
            problems.extend(registry.event_problems());
            problems.extend(super::validate::startup_problems());
            match &self.only {
                None => {
                    handlers.extend(registry.handlers().iter().map(|r| Handler::from_record(r)))
                }
                Some(names) => {
                    problems.extend(registry.duplicate_handler_problems());
                    for n in names {
                        match registry.handler(n) {
                            Some(r) => handlers.push(Handler::from_record(r)),
                            None => problems.push(Problem::new(
                                ProblemKind::UnknownName,
                                n,
                                format!("`only` names `{n}`, which is not a registered handler"),
                            )),
                        }
                    }
                }
            }
        }
        handlers.extend(self.extra);
        for (name, o) in &self.overrides {
            match handlers.iter_mut().find(|h| &h.name == name) {
                Some(h) => o.apply(&mut h.options),
                None => problems.push(Problem::new(
                    ProblemKind::UnknownName,
                    name,
                    format!("the configuration has settings for handler `{name}`, which this bus does not have"),
                )),
            }
        }
        for h in &mut handlers {
            super::compiled::apply_defaults(h, self.default_retry, self.default_timeout);
        }
        problems.extend(super::validate::check_handlers(handlers.iter().map(|h| {
            (
                h.name.as_str(),
                h.pattern.as_str(),
                &h.options,
                h.source.clone(),
            )
        })));
        for h in &handlers {
            problems.extend(super::validate::handler_problems(h));
        }
        let mut schedules = Vec::new();
        if self.schedules {
            if self.use_registry {
                for r in registry.scheduled() {
                    match ScheduledJob::from_record(r) {
                        Ok(s) => schedules.push(s),
                        Err(reason) => problems.push(Problem::new(
                            ProblemKind::InvalidSchedule,
                            r.name,
                            format!(
                                "scheduled function `{}` ({}:{}): {reason}",
                                r.name, r.location.file, r.location.line
                            ),
                        )),
                    }
                }
            }
            schedules.extend(self.extra_schedules);
            schedules.sort_by(|a, b| a.name.cmp(&b.name));
            for pair in schedules.windows(2) {
                if pair[0].name == pair[1].name {
                    problems.push(Problem::new(
                        ProblemKind::DuplicateName,
                        &pair[0].name,
                        format!(
                            "two scheduled functions are named `{}`: at {} and at {}",
                            pair[0].name, pair[0].source, pair[1].source
                        ),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(ValidationError { problems }.into());
        }
        let compile = super::compiled::CompileSettings {
            metrics: self.metrics,
            samples: self.metric_samples,
            blocking: ThreadPool::new(
                ExecutorConfig::new()
                    .max_workers(self.blocking_threads)
                    .thread_name_prefix("eventflow-blocking-"),
            ),
            default_retry: self.default_retry,
            default_timeout: self.default_timeout,
        };
        let mut slots = Vec::with_capacity(handlers.len());
        for h in handlers {
            // Checked above, so parsing cannot fail here; skip defensively if it does.
            if let Ok(slot) = compile.compile(h) {
                slots.push(Arc::new(slot));
            }
        }
        let routing = super::routing::Routing::new(slots);
        let backend: Arc<dyn Backend> = match self.backend {
            Some(PendingBackend::Ready(b)) => b,
            Some(PendingBackend::Config(cfg)) => cfg.connect().await?,
            None => Arc::new(MemoryBackend::new()),
        };
        let inner = Arc::new(Inner {
            dead_letters: backend.dead_letters(),
            routing: arc_swap::ArcSwap::from_pointee(routing),
            changing_routes: std::sync::Mutex::new(()),
            backend: backend.clone(),
            allow_unhandled: self.allow_unhandled,
            shared_backend: backend.shared(),
            shutdown_timeout: self.shutdown_timeout,
            headers: self.headers,
            accepting: AtomicBool::new(true),
            shutting_down: AtomicBool::new(false),
            blocking: compile.blocking.clone(),
            compile,
            published: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            inflight: InFlight::default(),
            cancel: CancellationToken::new(),
            recorder: self.recorder,
            runtime,
            telemetry: Telemetry::new(self.metrics, self.tracing),
            schedules: Scheduler::new(schedules),
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

/// The backend a builder will use: one given ready, or settings to connect from.
pub(super) enum PendingBackend {
    Ready(Arc<dyn Backend>),
    Config(Box<dyn BackendConfig>),
}

impl std::fmt::Debug for EventBusBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBusBuilder").finish_non_exhaustive()
    }
}
