//! The runtime of eventflow: registry, routing, bus, executors, retry, dead letters and
//! backends. Users depend on the `eventflow` crate, which re-exports this one together with
//! the macros.

pub mod backend;
pub mod batch;
pub mod bus;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod executor;
mod gate;
pub mod handler;
pub mod health;
pub mod model;
pub mod pattern;
pub mod pipeline;
#[cfg(feature = "redis")]
pub mod redis_backend;
pub mod registry;
pub mod retry;
pub mod schedule;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod timer;

pub use backend::{Backend, BackendHealth, Delivery, DeliverySink, MemoryBackend, Retries};
pub use batch::{BatchConfig, BatchContext, BatchError};
pub use bus::{
    DeliveryReport, EventBus, EventBusBuilder, HandlerOutcome, OutcomeStatus, Redelivery,
    ShutdownReport, UnfinishedDelivery,
};
pub use dead_letter::{DeadLetter, DeadLetterStore, MemoryDeadLetters};
pub use error::{
    ConnectionError, EventError, HandlerError, HandlerErrorKind, NoHandler, PanicError,
    PayloadError, PublishError, Result, TimeoutError, ValidationError,
};
pub use event::{Envelope, Event, EventId, EventName, Headers, Payload, TraceContext};
pub use executor::{Executor, ExecutorConfig, ThreadPool};
pub use handler::{
    BoxFuture, FilterFn, Handler, HandlerContext, HandlerOptions, IntoHandlerResult,
};
pub use health::{HealthCheckHandle, HealthChecker, HealthReport, HealthStatus};
pub use model::{HookContext, HookError, HookKind, Model, ModelEvent, ModelEventKind, Operation};
pub use pattern::{Pattern, Router, validate_name};
#[cfg(feature = "redis")]
pub use redis_backend::{RedisBackend, RedisConfig};
pub use registry::{EventRecord, HandlerRecord, Registry, SourceLocation};
pub use retry::RetryPolicy;
pub use schedule::{
    Schedule, ScheduleContext, ScheduleSpec, ScheduleStats, Scheduled, ScheduledRecord,
};
pub use stats::{HandlerMetrics, MetricsSnapshot};
pub use store::{Store, StoreBuilder, StoreError, StoreStats, Tx};
pub use timer::{MissedTicks, TimerHandle};

/// Keeps a crate's registrations in the binary.
///
/// The linker leaves out a crate that nothing in the binary references, and with it the
/// handlers and events it registers. Name each such crate once, anywhere in the binary:
///
/// ```ignore
/// eventflow::link!(billing_handlers);
/// ```
#[macro_export]
macro_rules! link {
    ($($krate:ident),+ $(,)?) => {
        $(
            #[allow(unused_extern_crates)]
            extern crate $krate as _;
        )+
    };
}

/// Items the macros' generated code uses. Not a public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::batch::{BatchConfig, BatchContext, BatchInvoke, check_payload};
    pub use crate::error::HandlerError;
    pub use crate::event::{Envelope, Event};
    pub use crate::executor::{Executor, ExecutorConfig};
    pub use crate::handler::{
        AsyncInvoke, BlockingInvoke, BoxFuture, FilterFn, HandlerContext, HandlerOptions,
        IntoHandlerResult, Invoke, decode_event,
    };
    pub use crate::model::{
        HookContext, HookError, HookInvoke, HookKind, HookRecord, IntoHookResult, Model,
        ModelRecord,
    };
    pub use crate::pipeline::{
        Bypass, Done, EvaluationState, ExecutionContext, Outcome, PipelineEvent, Process, StepDef,
        StepOptions, StepRecord,
    };
    pub use crate::registry::{EventRecord, HandlerRecord, SourceLocation};
    pub use crate::retry::RetryPolicy;
    pub use crate::schedule::{ScheduleContext, ScheduleSpec, ScheduledInvoke, ScheduledRecord};
    pub use crate::timer::MissedTicks;
    pub use ::inventory;
    pub use ::serde;
    pub use std::any::{Any, TypeId};
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::result::Result;
    pub use std::time::Duration;

    /// The runtime's version; the macros check it matches theirs.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
}
