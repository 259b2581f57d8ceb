//! The runtime of eventflow: registry, routing, bus, executors, retry, dead letters,
//! pipelines, models and stores, and the memory backend. Users depend on the `eventflow`
//! crate, which re-exports this one together with the macros; backends and store drivers
//! (`eventflow-redis`, `eventflow-sql`) are packages of their own built on this crate's
//! public API.
//!
//! ## Layers
//!
//! Modules import one way, from the upper layers to the lower (a test checks it):
//!
//! | layer | modules |
//! | --- | --- |
//! | L0 | `util`, `source`, `error`, `event`, `pattern` |
//! | L1 | `retry`, `executor`, `delivery`, `dead_letter`, `telemetry`, `schedule` (timing), `model` |
//! | L2 | `backend` |
//! | L2.5 | `pipeline` |
//! | L3 | `bus` |
//! | L4 | `store`, `health`, `testing` |

// L0
pub mod config;
mod error;
mod event;
mod pattern;
mod source;
mod util;
// L1
pub mod dead_letter;
mod delivery;
pub mod executor;
pub mod model;
mod retry;
pub mod schedule;
pub mod telemetry;
// L2
pub mod backend;
// L2.5
pub mod pipeline;
// L3
mod bus;
// L4
pub mod health;
mod macro_abi;
pub mod store;
pub mod testing;

#[doc(no_inline)]
pub use backend::{
    Backend, BackendHealth, DelayedEvent, DelayedPage, Delivery, DeliverySink, MemoryBackend,
    Retries, WhenFull, WorkerInfo,
};
pub use bus::batch;
pub use bus::{
    BatchConfig, BatchContext, BatchError, EventBus, EventBusBuilder, EventRecord, FilterFn,
    Handler, HandlerContext, HandlerInfo, HandlerOptions, HandlerRecord, Registry, ScheduleContext,
    ScheduledJob, ScheduledJobRecord, ScheduledJobStats, ShutdownReport, Subscription, TimerHandle,
    UnfinishedDelivery,
};
pub use bus::{BusConfig, HandlerOverrides, NoBackend};
pub use bus::{DEFAULT_BLOCKING_THREADS, DEFAULT_REQUEST_TIMEOUT};
#[allow(deprecated)]
pub use bus::{ScheduleStats, Scheduled, ScheduledRecord};
#[doc(no_inline)]
pub use dead_letter::{
    DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterStore, MemoryDeadLetters,
};
pub use delivery::{
    DeliveryReport, HandlerOutcome, HandlerResult, IntoReply, OutcomeStatus, Outcomes,
    OutcomesIntoIter, Redelivery, Reply, ReplyError,
};
pub use error::{
    ConnectionError, EventError, HandlerError, HandlerErrorKind, IntoResult, NoHandler, PanicError,
    PayloadError, Problem, ProblemKind, PublishError, Result, TimeoutError, ValidationError,
};
pub use event::{
    Envelope, Event, EventId, EventName, Headers, Payload, PublishOptions, TraceContext,
};
#[doc(no_inline)]
pub use executor::{Executor, ExecutorConfig, Panicked, ThreadPool};
#[doc(no_inline)]
pub use health::{HealthCheckHandle, HealthChecker, HealthReport, HealthStatus};
#[doc(no_inline)]
pub use model::{HookError, HookKind, Model, ModelEvent, ModelEventKind, Operation};
pub use pattern::{Pattern, Router, validate_name};
pub use retry::{RetryOn, RetryPolicy};
#[allow(deprecated)]
#[doc(no_inline)]
pub use schedule::ScheduleSpec;
#[doc(no_inline)]
pub use schedule::{DeclaredSchedule, MissedTicks, Schedule};
pub use source::SourceLocation;
#[doc(no_inline)]
pub use store::{HookContext, Store, StoreBuilder, StoreError, StoreStats, Tx};
#[doc(no_inline)]
pub use telemetry::{DEFAULT_METRIC_SAMPLES, HandlerMetrics, Latency, MetricsSnapshot};
pub use util::BoxFuture;

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
///
/// Its name carries the crate's version, and the macros name the module of their own
/// version, so a macro crate and a runtime of different versions fail to compile together
/// instead of misbehaving (the two are pinned to each other's exact version).
#[doc(hidden)]
pub mod __private_0_1_0 {
    pub use crate::bus::{
        AsyncInvoke, BatchConfig, BatchContext, BatchInvoke, BlockingInvoke, EventRecord, FilterFn,
        HandlerContext, HandlerOptions, HandlerRecord, Invoke, ScheduleContext, ScheduledJobInvoke,
        ScheduledJobRecord, check_payload, decode_event,
    };
    pub use crate::delivery::{HandlerResult, IntoReply};
    pub use crate::error::{HandlerError, IntoResult};
    pub use crate::event::{Envelope, Event};
    pub use crate::executor::{CustomExecutor, Executor, ExecutorConfig};
    pub use crate::macro_abi::{
        NamedRetryPolicy, batch_config, executor_config, handler_options, retry_policy,
        step_options,
    };
    pub use crate::model::{HookError, HookKind, Model, ModelRecord};
    pub use crate::pipeline::{
        Bypass, Done, EvaluationState, ExecutionContext, Outcome, PipelineEvent, Process, StepDef,
        StepOptions, StepRecord,
    };
    pub use crate::retry::RetryPolicy;
    pub use crate::schedule::{DeclaredSchedule, MissedTicks};
    pub use crate::source::SourceLocation;
    pub use crate::store::{HookContext, HookInvoke, HookRecord};
    pub use crate::util::BoxFuture;
    pub use ::inventory;
    pub use ::serde;
    pub use std::any::{Any, TypeId};
    pub use std::borrow::Cow;
    pub use std::boxed::Box;
    pub use std::result::Result;
    pub use std::time::Duration;

    /// The runtime's version, which the module's name carries.
    pub const VERSION: &str = env!("CARGO_PKG_VERSION");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_private_module_is_named_after_the_version() {
        let lib = include_str!("lib.rs");
        let name = format!(
            "pub mod __private_{} {{",
            env!("CARGO_PKG_VERSION").replace(['.', '-'], "_")
        );
        assert!(lib.contains(&name), "lib.rs must declare `{name}`");
    }
}
