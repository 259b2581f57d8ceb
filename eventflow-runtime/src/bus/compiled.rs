//! A handler as the bus runs it: its options compiled into a gate, a pool, a batcher,
//! a filter and its counters.

use std::sync::Arc;

use super::batch::Batcher;
use super::gate::PriorityGate;
use super::handler::{Handler, HandlerFn, HandlerOptions};
use crate::executor::{Executor, ThreadPool, WorkPool};
use crate::pattern::Pattern;
use crate::telemetry::{HandlerCounters, SlotMetrics};

pub(super) struct CompiledHandler {
    pub(super) name: Arc<str>,
    pub(super) pattern: Pattern,
    pub(super) options: HandlerOptions,
    pub(super) func: HandlerFn,
    pub(super) gate: Option<Arc<PriorityGate>>,
    pub(super) pool: Option<WorkPool>,
    pub(super) filter: Option<Arc<super::handler::DynFilter>>,
    pub(super) counters: HandlerCounters,
    pub(super) metrics: Option<SlotMetrics>,
    pub(super) batcher: Option<Batcher>,
    /// The child processes of a handler on the Process executor.
    pub(super) children: Option<Arc<crate::pipeline::process::ProcessPool>>,
    /// Whether it still takes deliveries, and its running ones.
    pub(super) liveness: super::routing::Liveness,
}

/// What handlers are compiled with: the bus's settings that apply to each.
pub(super) struct CompileSettings {
    pub(super) metrics: bool,
    pub(super) samples: usize,
    pub(super) blocking: ThreadPool,
    pub(super) default_retry: Option<crate::retry::RetryPolicy>,
    pub(super) default_timeout: Option<std::time::Duration>,
}

impl CompileSettings {
    /// Compiles a checked handler; `Err` with the reason when its pattern does not parse.
    pub(super) fn compile(&self, mut h: Handler) -> Result<CompiledHandler, String> {
        apply_defaults(&mut h, self.default_retry, self.default_timeout);
        let pattern = Pattern::parse(&h.pattern).map_err(|e| e.to_string())?;
        Ok(CompiledHandler::new(
            h,
            pattern,
            self.metrics,
            self.samples,
            &self.blocking,
        ))
    }
}

/// The bus's default retry policy and timeout, for a handler that sets none.
pub(super) fn apply_defaults(
    h: &mut Handler,
    retry: Option<crate::retry::RetryPolicy>,
    timeout: Option<std::time::Duration>,
) {
    if let (false, Some(policy)) = (h.options.retry_given, retry) {
        h.options.retry = policy;
    }
    if h.options.timeout.is_none() {
        h.options.timeout = timeout;
    }
}

impl CompiledHandler {
    /// `blocking` is the bus's pool for plain functions that name no pool of their own.
    /// `samples` recent durations are kept for its percentiles when `metrics` is on.
    pub(super) fn new(
        h: Handler,
        pattern: Pattern,
        metrics: bool,
        samples: usize,
        blocking: &ThreadPool,
    ) -> Self {
        let name: Arc<str> = h.name.into();
        let pool =
            WorkPool::for_executor(h.options.executor, &h.options.executor_config).or_else(|| {
                matches!(h.func, HandlerFn::Blocking(_))
                    .then(|| WorkPool::Threads(blocking.clone()))
            });
        CompiledHandler {
            metrics: metrics.then(|| SlotMetrics::new(name.clone())),
            name,
            pattern,
            gate: h.options.concurrency.map(PriorityGate::new),
            batcher: h.options.batch.map(Batcher::new),
            children: (h.options.executor == Executor::Process).then(|| {
                Arc::new(crate::pipeline::process::ProcessPool::new(
                    h.options.executor_config.clone(),
                ))
            }),
            pool,
            options: h.options,
            func: h.func,
            filter: h.filter,
            counters: HandlerCounters::new(if metrics { samples } else { 0 }),
            liveness: Default::default(),
        }
    }

    /// Inline async handlers run on the delivering task; everything else on its own task.
    /// A batched handler's delivery only waits for its batch, so it runs inline too.
    #[inline]
    pub(super) fn runs_inline(&self) -> bool {
        match self.func {
            HandlerFn::Async(_) => self.options.executor == Executor::Inline,
            HandlerFn::Batch { .. } => true,
            HandlerFn::Blocking(_) => false,
        }
    }
}
