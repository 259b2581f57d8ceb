//! # eventflow
//!
//! Event-driven programs in Rust. Annotate structs and functions; the framework registers
//! them at link time and runs them on tokio.
//!
//! ```rust,standalone_crate
//! use eventflow::prelude::*;
//!
//! #[derive(Event, Clone, Debug, Serialize, Deserialize)]
//! #[event(name = "user.created")]
//! struct UserCreated { id: u64, email: String }
//!
//! #[event_handler("user.created", retry(max_attempts = 3, backoff_factor = 0.01))]
//! async fn send_welcome(event: UserCreated, ctx: &HandlerContext) -> Result<(), HandlerError> {
//!     println!("welcome, {} (attempt {})", event.email, ctx.attempt());
//!     Ok(())
//! }
//!
//! #[event_handler("user.*")]
//! async fn audit(event: &Envelope) -> eventflow::Result<()> {
//!     println!("audit: {} {}", event.name, event.id);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eventflow::Result<()> {
//! let bus = EventBus::builder().build().await?;
//! let report = bus.dispatch(UserCreated { id: 1, email: "a@example.com".into() }).await?;
//! assert!(report.is_success());
//! assert_eq!(report.outcomes.len(), 2);
//! bus.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## The macros
//!
//! - [`#[derive(Event)]`](derive@Event) with `#[event(name = "user.created")]`: the type
//!   gets a stable name. Without `name`, the name is the type name in snake case
//!   (`UserCreated` → `user_created`).
//! - [`#[event_handler(pattern, ...)]`](macro@event_handler) on an `async fn` or a plain
//!   `fn`. Parameters: the event (a type deriving `Event` and `Deserialize`, by value or by
//!   reference; or `Envelope` / `&Envelope`), and optionally `&HandlerContext`. Returns
//!   `()` or `Result<(), E>` with `E: Into<HandlerError>`. Options:
//!
//! | option | meaning | default |
//! | --- | --- | --- |
//! | `name = "..."` | the handler's name on the bus (unique) | `module::path::fn_name` |
//! | `retry(max_attempts = 3, backoff_factor = 0.5, max_backoff = 60.0, jitter, retry_on = [E1, E2])` | retry policy, see [`RetryPolicy`] | no retry; inside `retry(...)`: 3, 0.5, 60.0 |
//! | `timeout = "5s"` | bound on one attempt (`ms`, `s`, `m`, `h`) | none |
//! | `executor = Inline \| Tokio \| ThreadPool` | where it runs, see [`Executor`] | `Inline` |
//! | `executor_config(max_workers = 4, max_tasks_per_child = 50, thread_name_prefix = "x-")` | the pool, with `ThreadPool` | CPUs, unlimited, none |
//! | `priority = 10` | among handlers of one event, higher runs first | 0 |
//! | `concurrency = 8` | deliveries at once; the rest wait by event priority | unbounded |
//! | `filter = path::to::predicate` | `fn(&T) -> bool` (`fn(&Envelope) -> bool` for untyped handlers): rejected events are filtered, not failed | none |
//! | `batch(max_size = 100, max_wait = "50ms")` | on an `async fn` taking `Vec<T>` (or `Vec<Envelope>`) and optionally `&BatchContext`: runs once per batch, see [`batch`] | one event at a time |
//! | `crate = "path"` | where to find eventflow | `::eventflow` |
//!
//! Mistakes are compile errors: a malformed pattern, an unknown option (with a
//! suggestion), a duplicate option, `max_attempts = 0`, a negative backoff, an unparsable
//! timeout, a generic handler, a missing or second event parameter, an unsupported return
//! type, a plain `fn` on `Tokio`, a `Vec` parameter without `batch(...)` or `batch(...)`
//! without one.
//!
//! ## Scheduled functions
//!
//! [`#[scheduled(every = "30s")]`](macro@scheduled) or `#[scheduled(cron = "0 */5 * * * *")]`
//! on an `async fn` or a plain `fn` that takes nothing, or `&ScheduleContext` (the tick and
//! the bus), and returns `()` or `Result<(), E>`. The bus runs it on every tick; with Redis,
//! once per tick among all the workers of a queue. Options: `name = "..."`,
//! `missed = Skip | CatchUp` (what happens to ticks missed while busy or down), and
//! `timeout = "10s"`. See [`schedule`] for the rules.
//!
//! ```rust,standalone_crate
//! use eventflow::prelude::*;
//!
//! #[scheduled(every = "30s", missed = CatchUp)]
//! async fn sweep_expired_sessions(ctx: &ScheduleContext) -> Result<(), HandlerError> {
//!     println!("sweeping for the tick at {:?}", ctx.tick());
//!     Ok(())
//! }
//!
//! #[scheduled(cron = "0 0 3 * * *", name = "nightly-report")]
//! fn nightly_report() {}
//! # fn main() {}
//! ```
//!
//! Mistakes are compile errors: no schedule or both, an unparsable interval, an invalid
//! cron expression, an unknown `missed` policy, a parameter other than the context, a
//! generic function, an unsupported return type.
//!
//! ## Pipelines
//!
//! Pipeline events are units of work that run in [`pipeline::Pipeline`]s: a type with
//! `#[derive(Event)]`, pipeline settings under `#[event(...)]` (`executor`,
//! `executor_config`, `retry`, `evaluation`, `stop_on_error`, `stop_on_success`,
//! `stop_on_exception`, `timeout`, `goto = [..]`, or just `pipeline`) and an
//! `impl Process`; or a function with [`#[event(...)]`](macro@event). See
//! [`pipeline`].
//!
//! ```rust,standalone_crate
//! use eventflow::prelude::*;
//!
//! #[event(retry(max_attempts = 3))]
//! async fn double(n: u32) -> Outcome<u32> {
//!     Outcome::success(n * 2)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::from_pointy("double |-> double")?;
//! assert_eq!(pipeline.run(5u32).await.output::<u32>(), Some(20));
//! # Ok(()) }
//! ```
//!
//! ## Models and hooks
//!
//! [`#[derive(Model)]`](derive@Model) (with `#[model(name = "user")]` and an
//! `Option<i64>` field marked `#[model(id)]`) makes a type storable in a [`Store`] (memory,
//! SQLite, PostgreSQL); [`#[hooks]`](macro@hooks) on its impl block registers methods marked
//! `#[before_create]`, `#[after_write]`, ... as lifecycle hooks, and
//! `#[before_create(User)]` on a free function adds one from elsewhere. Model events
//! (`user.created`, ...) carry a [`ModelEvent`] and are published after each commit, through
//! an outbox on SQL stores. See [`model`] and
//! [`store`].
//!
//! ```rust,standalone_crate
//! use eventflow::prelude::*;
//!
//! #[derive(Model, Clone, Debug, Serialize, Deserialize)]
//! #[model(name = "user")]
//! struct User {
//!     #[model(id)]
//!     id: Option<i64>,
//!     email: String,
//! }
//!
//! #[hooks]
//! impl User {
//!     #[before_create]
//!     fn normalize(&mut self) {
//!         self.email = self.email.to_lowercase();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = EventBus::builder().allow_unhandled(true).build().await?;
//! let store = Store::memory(&bus);
//! let user = store.create(User { id: None, email: "Ada@Example.com".into() }).await?;
//! assert_eq!(user.email, "ada@example.com");
//! # Ok(()) }
//! ```
//!
//! ## Linking handler crates
//!
//! Registrations live in the crate that defines them. If nothing in your binary refers to a
//! crate that only holds handlers, the linker leaves it out; name it once with
//! [`link!`]: `eventflow::link!(billing_handlers);`.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use eventflow_macros::{
    Event, Model, after_create, after_delete, after_update, after_write, before_create,
    before_delete, before_update, before_write, event, event_handler, hooks, scheduled,
};
pub use eventflow_runtime::*;

/// The Redis Streams backend (feature `redis`, on by default): the package
/// `eventflow-redis`. Its builder methods (`.redis(url)`, `.queue(..)`, ...) come from
/// [`RedisBusExt`](redis::RedisBusExt), which the prelude brings into scope.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use eventflow_redis as redis;

/// The admin app (feature `admin`): the package `eventflow-admin`, an axum router with a
/// JSON API, a web dashboard and `/metrics` (`eventflow::admin::router(bus)`).
#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub use eventflow_admin as admin;

/// The SQLite and PostgreSQL store drivers (features `sqlite`, on by default, and
/// `postgres`): the package `eventflow-sql`. `Store::sqlite` and `Store::postgres` come
/// from [`SqlStoreExt`](sql::SqlStoreExt), which the prelude brings into scope.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use eventflow_sql as sql;

/// Everything a program using eventflow usually needs.
pub mod prelude {
    pub use crate::event;
    pub use crate::pipeline::{
        Bypass, EvaluationState, ExecutionContext, ForEachInput, Outcome, OutcomeExt, Pipeline,
        PipelineRun, Process, RunStatus, Signal, StepDef, StepOptions, StopReason, TaskOutputs,
    };
    #[cfg(feature = "redis")]
    pub use crate::redis::{RedisBusExt, RedisConfig};
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub use crate::sql::{SqlStoreBuilderExt, SqlStoreExt};
    pub use crate::testing::Recorder;
    pub use crate::{
        BatchContext, DeadLetter, DeliveryReport, Envelope, Event, EventBus, EventError, Executor,
        ExecutorConfig, Handler, HandlerContext, HandlerError, MissedTicks, RetryPolicy,
        ScheduleContext, event_handler, scheduled,
    };
    pub use crate::{
        EventId, HandlerErrorKind, HealthChecker, HealthStatus, Operation, OutcomeStatus,
        PublishError, Redelivery, Registry,
    };
    pub use crate::{
        HookContext, HookError, Model, ModelEvent, Store, StoreError, after_create, after_delete,
        after_update, after_write, before_create, before_delete, before_update, before_write,
        hooks,
    };
    pub use serde::{Deserialize, Serialize};
}

#[doc(hidden)]
pub use eventflow_runtime::__private_0_1_0;

/// The README's code, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
