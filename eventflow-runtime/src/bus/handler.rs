//! Handlers: what `#[event_handler]` generates, and [`Handler`] for handlers built at run
//! time from closures.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::Publisher;
pub use super::options::{FilterFn, HandlerOptions};
use crate::bus::EventBus;
use crate::bus::batch::{BatchConfig, BatchContext, BatchInvoke, DynBatch, DynCheck};
use crate::delivery::{HandlerResult, IntoReply};
use crate::error::{EventError, HandlerError};
use crate::event::{Envelope, Event, Headers};
use crate::executor::{Executor, ExecutorConfig};
use crate::retry::RetryPolicy;

/// A boxed, sendable future.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The entry point `#[event_handler]` generates for an `async fn`.
pub type AsyncInvoke = fn(HandlerContext) -> BoxFuture<'static, HandlerResult>;
/// The entry point `#[event_handler]` generates for a plain `fn`.
pub type BlockingInvoke = fn(HandlerContext) -> HandlerResult;

/// How a registered handler is called.
#[derive(Clone, Copy)]
pub enum Invoke {
    /// An `async fn`.
    Async(AsyncInvoke),
    /// A plain `fn`: it never runs on the async workers.
    Blocking(BlockingInvoke),
    /// An `async fn` taking a `Vec` of events (with `batch(...)`).
    Batch(BatchInvoke),
}

/// What a handler gets besides the event: the envelope, and a way to publish follow-up
/// events that stay in the same causal chain.
#[derive(Clone)]
pub struct HandlerContext {
    envelope: Envelope,
    handler: Arc<str>,
    bus: EventBus,
}

impl HandlerContext {
    pub(crate) fn new(envelope: Envelope, handler: Arc<str>, bus: EventBus) -> Self {
        HandlerContext {
            envelope,
            handler,
            bus,
        }
    }

    /// The event being handled.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The attempt, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.envelope.attempt
    }

    /// The name of the handler being run.
    pub fn handler_name(&self) -> &str {
        &self.handler
    }

    /// The event's headers.
    pub fn headers(&self) -> &Headers {
        &self.envelope.headers
    }

    /// The bus the event came from.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Publishes a follow-up event: it carries this event's correlation id and headers, and
    /// this event's id as its causation id.
    pub async fn publish<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        Publisher::new(&self.bus, Some(&self.envelope))
            .publish(event)
            .await
    }

    /// [`publish`](Self::publish) with options for this event alone
    /// ([`PublishOptions`](crate::PublishOptions)).
    pub async fn publish_with<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
        options: crate::PublishOptions,
    ) -> Result<(), EventError> {
        Publisher::new(&self.bus, Some(&self.envelope))
            .publish_with(event, options)
            .await
    }

    /// Like [`publish`](Self::publish), with a name and a JSON payload.
    pub async fn publish_raw(
        &self,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), EventError> {
        Publisher::new(&self.bus, Some(&self.envelope))
            .publish_raw(name, payload)
            .await
    }

    /// [`publish`](Self::publish) from a plain (blocking) handler.
    pub fn publish_blocking<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        Publisher::new(&self.bus, Some(&self.envelope)).publish_blocking(event)
    }
}

/// The event in `ctx` as a `T`, or a permanent payload error naming the event and type.
pub fn decode_event<T: DeserializeOwned + Clone + 'static>(
    ctx: &HandlerContext,
) -> Result<std::borrow::Cow<'_, T>, HandlerError> {
    crate::bus::batch::decode_one(ctx.envelope())
}

pub(super) type DynAsync =
    dyn Fn(HandlerContext) -> BoxFuture<'static, HandlerResult> + Send + Sync;
type DynBlocking = dyn Fn(HandlerContext) -> HandlerResult + Send + Sync;
pub(crate) type DynFilter = dyn Fn(&Envelope) -> bool + Send + Sync;

#[derive(Clone)]
pub(crate) enum HandlerFn {
    Async(Arc<DynAsync>),
    Blocking(Arc<DynBlocking>),
    Batch {
        run: Arc<DynBatch>,
        check: Option<Arc<DynCheck>>,
    },
}

impl From<Invoke> for HandlerFn {
    fn from(i: Invoke) -> Self {
        match i {
            Invoke::Async(f) => HandlerFn::Async(Arc::new(f)),
            Invoke::Blocking(f) => HandlerFn::Blocking(Arc::new(f)),
            Invoke::Batch(b) => HandlerFn::Batch {
                run: Arc::new(b.run),
                check: Some(Arc::new(b.check)),
            },
        }
    }
}

/// A handler defined at run time, added with
/// [`EventBusBuilder::handler`](crate::EventBusBuilder::handler).
///
/// ```
/// use eventflow_runtime::{Envelope, Handler, HandlerError, RetryPolicy};
/// let h = Handler::new("log-everything", "**", |env: Envelope, _ctx| async move {
///     println!("{} {}", env.name, env.id);
///     Ok::<(), HandlerError>(())
/// })
/// .retry(RetryPolicy::attempts(3));
/// assert_eq!(h.name(), "log-everything");
/// ```
#[derive(Clone)]
pub struct Handler {
    pub(crate) filter: Option<Arc<DynFilter>>,
    pub(crate) name: String,
    pub(crate) pattern: String,
    pub(crate) options: HandlerOptions,
    pub(crate) func: HandlerFn,
    pub(crate) source: String,
}

impl Handler {
    /// An async handler receiving the envelope.
    #[track_caller]
    pub fn new<F, Fut>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        F: Fn(Envelope, HandlerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let func: Arc<DynAsync> = Arc::new(move |ctx: HandlerContext| {
            let env = ctx.envelope().clone();
            let fut = f(env, ctx);
            Box::pin(async move { fut.await.map(|()| None) }) as BoxFuture<'static, _>
        });
        Self::from_fn(name, pattern, HandlerFn::Async(func))
    }

    /// An async handler receiving the payload as a `T` and returning a value: the value
    /// is in the delivery report ([`DeliveryReport::value`](crate::DeliveryReport::value))
    /// and answers [`EventBus::request`](crate::EventBus::request) (basefunctions'
    /// `EventResult`). A value that does not serialize fails the attempt, naming its type.
    ///
    /// ```
    /// use eventflow_runtime::{Handler, HandlerError};
    /// let h = Handler::replying("price", "quote.asked", |qty: u32, _ctx| async move {
    ///     Ok::<_, HandlerError>(qty * 3)
    /// });
    /// assert_eq!(h.name(), "price");
    /// ```
    #[track_caller]
    pub fn replying<T, R, F, Fut>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        T: DeserializeOwned + Clone + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T, HandlerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let func: Arc<DynAsync> = Arc::new(move |ctx: HandlerContext| {
            match decode_event::<T>(&ctx).map(std::borrow::Cow::into_owned) {
                Ok(event) => {
                    let fut = f(event, ctx);
                    Box::pin(async move { fut.await.into_reply() }) as BoxFuture<'static, _>
                }
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        });
        Self::from_fn(name, pattern, HandlerFn::Async(func))
    }

    /// An async handler receiving the payload as a `T` (a clone of the published value in
    /// one process; deserialized otherwise).
    #[track_caller]
    pub fn typed<T, F, Fut>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        T: DeserializeOwned + Clone + Send + 'static,
        F: Fn(T, HandlerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let func: Arc<DynAsync> = Arc::new(move |ctx: HandlerContext| {
            match decode_event::<T>(&ctx).map(std::borrow::Cow::into_owned) {
                Ok(event) => {
                    let fut = f(event, ctx);
                    Box::pin(async move { fut.await.map(|()| None) }) as BoxFuture<'static, _>
                }
                Err(e) => Box::pin(std::future::ready(Err(e))),
            }
        });
        Self::from_fn(name, pattern, HandlerFn::Async(func))
    }

    /// A plain (blocking) handler receiving the envelope; it runs off the async workers.
    #[track_caller]
    pub fn blocking<F>(name: impl Into<String>, pattern: impl Into<String>, f: F) -> Self
    where
        F: Fn(Envelope, &HandlerContext) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        let func: Arc<DynBlocking> =
            Arc::new(move |ctx: HandlerContext| f(ctx.envelope().clone(), &ctx).map(|()| None));
        Self::from_fn(name, pattern, HandlerFn::Blocking(func))
    }

    /// A batched handler receiving each batch's context (its envelopes, and
    /// [`decode`](BatchContext::decode) for typed payloads). See [`batch`](crate::batch).
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventflow_runtime::{BatchConfig, Handler, HandlerError};
    /// let h = Handler::batch(
    ///     "store-metrics",
    ///     "metric.*",
    ///     BatchConfig {max_size: 100, max_wait: Duration::from_millis(50) },
    ///     |batch| async move {
    ///         println!("storing {} metrics", batch.envelopes().len());
    ///         Ok::<(), HandlerError>(())
    ///     },
    /// );
    /// assert_eq!(h.name(), "store-metrics");
    /// ```
    #[track_caller]
    pub fn batch<F, Fut>(
        name: impl Into<String>,
        pattern: impl Into<String>,
        config: BatchConfig,
        f: F,
    ) -> Self
    where
        F: Fn(BatchContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let run: Arc<DynBatch> = Arc::new(move |ctx| Box::pin(f(ctx)) as BoxFuture<'static, _>);
        let mut h = Self::from_fn(name, pattern, HandlerFn::Batch { run, check: None });
        h.options.batch = Some(config);
        h
    }

    /// A batched handler receiving the payloads as `T`s; an event whose payload is not a
    /// `T` goes to dead letters without joining a batch.
    #[track_caller]
    pub fn batch_of<T, F, Fut>(
        name: impl Into<String>,
        pattern: impl Into<String>,
        config: BatchConfig,
        f: F,
    ) -> Self
    where
        T: DeserializeOwned + Clone + Send + 'static,
        F: Fn(Vec<T>, BatchContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let run: Arc<DynBatch> = Arc::new(move |ctx: BatchContext| match ctx.decode::<T>() {
            Ok(events) => Box::pin(f(events, ctx)) as BoxFuture<'static, _>,
            Err(e) => Box::pin(std::future::ready(Err(e))),
        });
        let check: Arc<DynCheck> = Arc::new(crate::bus::batch::check_payload::<T>);
        let mut h = Self::from_fn(
            name,
            pattern,
            HandlerFn::Batch {
                run,
                check: Some(check),
            },
        );
        h.options.batch = Some(config);
        h
    }

    #[track_caller]
    pub(super) fn from_fn(
        name: impl Into<String>,
        pattern: impl Into<String>,
        func: HandlerFn,
    ) -> Self {
        let caller = std::panic::Location::caller();
        Handler {
            filter: None,
            name: name.into(),
            pattern: pattern.into(),
            options: HandlerOptions::DEFAULT,
            func,
            source: format!("{}:{}", caller.file(), caller.line()),
        }
    }

    /// From a registry record.
    pub(crate) fn from_record(r: &crate::bus::HandlerRecord) -> Self {
        let mut options = r.options.clone();
        if let Some(named) = options.retry_from {
            options = options.with_retry(named());
        }
        if let Some(make) = options.custom_from.take() {
            options.executor_config = options.executor_config.clone().custom(make());
        }
        Handler {
            filter: r.options.filter.map(|f| Arc::new(f) as Arc<DynFilter>),
            name: r.name.to_owned(),
            pattern: r.pattern.to_owned(),
            options,
            func: r.invoke.into(),
            source: format!("{}:{}", r.location.file, r.location.line),
        }
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options = self.options.with_retry(policy);
        self
    }

    /// Bounds each attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.options.timeout = Some(timeout);
        self
    }

    /// Sets the executor and its settings.
    pub fn executor(mut self, executor: Executor, config: ExecutorConfig) -> Self {
        self.options.executor = executor;
        self.options.executor_config = config;
        self
    }

    /// Runs on an executor of yours ([`Executor::Custom`]).
    pub fn custom_executor(mut self, executor: crate::executor::CustomExecutor) -> Self {
        let config = self.options.executor_config.clone().custom(executor);
        self.options.executor = Executor::Custom;
        self.options.executor_config = config;
        self
    }

    /// Among the handlers of one event, higher runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.options.priority = priority;
        self
    }

    /// Delivers only the events `keep` accepts; the others count as filtered.
    pub fn filter(mut self, keep: impl Fn(&Envelope) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(keep));
        self
    }

    /// Deliveries running at once at most.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.options.concurrency = Some(limit);
        self
    }
}

impl std::fmt::Debug for HandlerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerContext")
            .field("handler", &self.handler_name())
            .field("event", &self.envelope().name)
            .field("id", &self.envelope().id)
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("pattern", &self.pattern)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Invoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoke").finish_non_exhaustive()
    }
}
