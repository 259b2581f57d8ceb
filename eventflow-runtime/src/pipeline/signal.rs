//! What a run says about itself: the lifecycle signals observers see, the status of each
//! step and of the run, and the run's result with its trace.

use std::any::Any;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::Inner;
use super::datum::Datum;
use super::run::*;

/// Something that happened in a run: volnux's signals. Observers get each as it happens;
/// the run's trace is the list of them.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// The run began.
    PipelineStarted {
        /// The pipeline's name.
        pipeline: Arc<str>,
    },
    /// A step's attempt began.
    StepStarted {
        /// The step (a group's label for a parallel group).
        step: Arc<str>,
        /// The attempt, from 1.
        attempt: u32,
    },
    /// An attempt raised and will be retried.
    StepRetried {
        /// The step.
        step: Arc<str>,
        /// The attempt that failed.
        attempt: u32,
        /// Its error.
        error: String,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// The step was skipped by `can_bypass`.
    StepBypassed {
        /// The step.
        step: Arc<str>,
        /// Why.
        reason: String,
    },
    /// `goto` switched the run to another step.
    Goto {
        /// The step that called it.
        from: Arc<str>,
        /// The descriptor.
        descriptor: u32,
        /// The step switched to.
        to: Arc<str>,
        /// Why.
        reason: String,
    },
    /// A step ended.
    StepFinished {
        /// The step.
        step: Arc<str>,
        /// Its status.
        status: StepStatus,
        /// Tasks run (1 for a plain step).
        tasks: usize,
        /// How long it took, retries included.
        took: Duration,
    },
    /// The run ended.
    PipelineFinished {
        /// The pipeline's name.
        pipeline: Arc<str>,
        /// How.
        status: RunStatus,
    },
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Succeeded.
    Succeeded,
    /// Failed with a message.
    Failed(String),
    /// Raised (its retries spent).
    Raised(String),
    /// Skipped by `can_bypass`.
    Bypassed,
    /// Left with `goto`.
    Switched(u32),
}

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `stop_on_success`.
    Success,
    /// `stop_on_error`.
    Error,
    /// `stop_on_exception`.
    Exception,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// The last step succeeded.
    Completed,
    /// A step failed and had no failure branch.
    Failed {
        /// The step.
        step: String,
        /// Its message or error.
        message: String,
    },
    /// A stop condition ended the run after a step.
    Stopped {
        /// The step.
        step: String,
        /// Which condition.
        reason: StopReason,
    },
}

/// Receives a run's signals as they happen.
pub trait Observer: Send + Sync {
    /// One signal.
    fn on_signal(&self, signal: &Signal);
}

impl<F: Fn(&Signal) + Send + Sync> Observer for F {
    fn on_signal(&self, signal: &Signal) {
        self(signal)
    }
}

/// A finished run: its status, its last value, and its trace.
pub struct PipelineRun {
    pub(crate) status: RunStatus,
    pub(crate) output: Option<Datum>,
    pub(crate) inner: Arc<Inner>,
    pub(crate) raw: Trace,
    pub(crate) finished_at: Duration,
    pub(crate) trace: std::sync::OnceLock<Vec<(Duration, Signal)>>,
}

impl PipelineRun {
    /// How the run ended.
    pub fn status(&self) -> &RunStatus {
        &self.status
    }

    /// Whether it completed.
    pub fn is_success(&self) -> bool {
        self.status == RunStatus::Completed
    }

    /// The last step's output, if it is a `T`.
    pub fn output<T: Any + Clone>(&self) -> Option<T> {
        self.output
            .as_ref()
            .and_then(|o| o.downcast_ref::<T>())
            .cloned()
    }

    /// The last step's output, if it is a `T`, taken out of the run (cloned only if
    /// something else still holds it).
    #[inline]
    pub fn into_output<T: Any + Clone + Send + Sync>(self) -> Option<T> {
        self.output?.into_value::<T>()
    }

    /// Every signal of the run, with its time since the run began.
    pub fn trace(&self) -> &[(Duration, Signal)] {
        self.trace.get_or_init(|| {
            let mut all = Vec::with_capacity(self.raw.len() * 2 + 1);
            for (at, ev) in &self.raw {
                let at = Duration::from_nanos(*at);
                if let Ev::StepRan { node, took } = ev {
                    let step = &self.inner.nodes[*node as usize].label;
                    let took = Duration::from_nanos(*took);
                    all.push((
                        at,
                        Signal::StepStarted {
                            step: step.clone(),
                            attempt: 1,
                        },
                    ));
                    all.push((
                        at + took,
                        Signal::StepFinished {
                            step: step.clone(),
                            status: StepStatus::Succeeded,
                            tasks: 1,
                            took,
                        },
                    ));
                } else {
                    all.push((at, ev.signal(&self.inner)));
                }
            }
            all.push((
                self.finished_at,
                Signal::PipelineFinished {
                    pipeline: self.inner.name.clone(),
                    status: self.status.clone(),
                },
            ));
            all
        })
    }

    /// The trace, one line per signal.
    pub fn trace_text(&self) -> String {
        let mut out = String::new();
        for (at, s) in self.trace() {
            let _ = writeln!(out, "{:>9.3}ms  {}", at.as_secs_f64() * 1000.0, describe(s));
        }
        out
    }
}

pub(crate) fn describe(s: &Signal) -> String {
    match s {
        Signal::PipelineStarted { pipeline } => format!("pipeline `{pipeline}` started"),
        Signal::StepStarted { step, attempt } => format!("{step}: attempt {attempt}"),
        Signal::StepRetried {
            step,
            attempt,
            error,
            delay,
        } => format!("{step}: attempt {attempt} raised `{error}`; retrying in {delay:?}"),
        Signal::StepBypassed { step, reason } => format!("{step}: bypassed ({reason})"),
        Signal::Goto {
            from,
            descriptor,
            to,
            reason,
        } => format!("{from}: goto {descriptor} -> {to} ({reason})"),
        Signal::StepFinished {
            step,
            status,
            tasks,
            took,
        } => format!("{step}: {status:?} ({tasks} task(s), {took:?})"),
        Signal::PipelineFinished { pipeline, status } => {
            format!("pipeline `{pipeline}` finished: {status:?}")
        }
    }
}

impl std::fmt::Debug for PipelineRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineRun").finish_non_exhaustive()
    }
}
