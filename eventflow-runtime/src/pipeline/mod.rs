//! Pipelines of events (volnux's pipelines): steps run in order, each step's output the
//! next one's input, with retries, evaluation states for steps of several tasks, stop
//! conditions, `goto`, bypass, branches by descriptor, and a trace of everything that
//! happened.
//!
//! ```
//! use eventflow_runtime::pipeline::{ExecutionContext, Outcome, OutcomeExt, Pipeline, StepDef, StepOptions};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let double = StepDef::from_fn("double", StepOptions::DEFAULT, |ctx: ExecutionContext, n: u32| async move {
//!     (ctx, Outcome::success(n * 2))
//! });
//! let pipeline = Pipeline::builder("numbers").then(double.clone()).then(double).build()?;
//! let run = pipeline.run(5u32).await;
//! assert_eq!(run.output::<u32>(), Some(20));
//! # Ok(()) }
//! ```
//!
//! ## Flow
//!
//! - A step that succeeds passes its output to the next step (`|->` in Pointy; `->` passes
//!   the step's own input on instead).
//! - A step that fails (a failure outcome, or an error once its retries are spent) takes
//!   its branch `0` if it has one, with its own input; otherwise the run ends as failed.
//! - `ctx.goto(n, ..)` moves to the step's branch `n` with the given result.
//! - With `stop_on_success`, `stop_on_error` or `stop_on_exception`, the run stops after
//!   the step and says why.
//! - A run takes at most `max_steps` steps (default 100; Pointy's `@recursive-depth:N`),
//!   which bounds loops made with `goto`.

mod bridge;
mod command;
pub(crate) mod datum;
mod pointy;
mod print;
#[cfg(unix)]
pub mod process;
#[cfg(not(unix))]
#[path = "process_stub.rs"]
pub mod process;
pub(crate) mod slot;
mod step;

use std::any::Any;
use std::fmt::Write as _;
use std::sync::Arc;

pub use command::DEFAULT_MAX_OUTPUT_BYTES;
pub use pointy::{MAX_POINTY_NESTING, PointyError};
pub use process::serve_process_steps;
pub use step::{
    Bypass, Done, EvaluationState, ExecutionContext, Outcome, OutcomeExt, PipelineEvent, Process,
    StepDef, StepError, StepOptions, StepRecord, registered,
};

use datum::Datum;

mod builder;
mod graph;
mod run;
mod signal;

pub use builder::PipelineBuilder;
use graph::*;
pub use graph::{ForEachInput, TaskOutputs};
pub use signal::{Observer, PipelineRun, RunStatus, Signal, StepStatus, StopReason};

type Shared = Option<step::SharedMap>;

/// A problem found while building a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No step has this name.
    #[error("unknown step `{name}`{at}")]
    UnknownStep {
        /// The name.
        name: String,
        /// Where, in Pointy text (` at line L, column C`).
        at: String,
    },
    /// A step's input is not what the step before passes on.
    #[error("step `{to}` takes `{expected}`, but `{from}` passes `{found}`{at}")]
    TypeMismatch {
        /// The step before.
        from: String,
        /// The step after.
        to: String,
        /// What `to` takes.
        expected: &'static str,
        /// What `from` passes.
        found: &'static str,
        /// Where `to` is, in Pointy text (` at line L, column C`); empty for a pipeline
        /// made with the builder.
        at: String,
    },
    /// Pointy text that does not parse.
    #[error(transparent)]
    Pointy(#[from] PointyError),
    /// Something else: an empty pipeline, a group of mixed types, ...
    #[error("{0}")]
    Invalid(String),
}

/// A validated pipeline; cheap to clone and run many times.
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) max_steps: usize,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
}

impl Pipeline {
    /// A builder.
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            nodes: Vec::new(),
            last: None,
            max_steps: 100,
            observers: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// Parses Pointy text; names are registered steps. See [`pointy`](self#pointy).
    pub fn from_pointy(text: &str) -> Result<Pipeline, PipelineError> {
        Self::from_pointy_with(text, Vec::new())
    }

    /// Parses Pointy text; names are `steps`, then registered steps.
    pub fn from_pointy_with(text: &str, steps: Vec<StepDef>) -> Result<Pipeline, PipelineError> {
        pointy::build(text, steps)
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Runs the pipeline on `input`.
    // Not an `async fn`: the run's future is returned as it is, with no layer around it
    // for its result to pass through.
    pub fn run<T: Any + Send + Sync>(
        &self,
        input: T,
    ) -> impl std::future::Future<Output = PipelineRun> + Send + '_ {
        run::run(&self.inner, Datum::new(input))
    }

    /// The pipeline as Pointy text that parses back into the same pipeline (with the same
    /// steps given to [`from_pointy_with`](Self::from_pointy_with)). A pipeline made with
    /// the builder prints too, as far as Pointy can say it (a step over each item of a
    /// batch prints as the step).
    pub fn to_pointy(&self) -> String {
        print::to_pointy(&self.inner.name, &self.inner.nodes, self.inner.max_steps)
    }

    /// The pipeline as a Graphviz `digraph`.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=LR;\n",
            self.inner.name.replace('"', "'")
        );
        for (i, n) in self.inner.nodes.iter().enumerate() {
            let shape = match n.kind {
                NodeKind::Single(_) => "box",
                NodeKind::Parallel(_) => "box3d",
                NodeKind::ForEach(_) => "folder",
            };
            let _ = writeln!(
                out,
                "  n{i} [label=\"{}\", shape={shape}];",
                n.label.replace('"', "'")
            );
        }
        for (i, n) in self.inner.nodes.iter().enumerate() {
            if let Some(next) = n.next {
                let style = if self.inner.nodes[next].pipe {
                    "solid"
                } else {
                    "dashed"
                };
                let _ = writeln!(out, "  n{i} -> n{next} [style={style}];");
            }
            for (d, t) in &n.branches {
                let label = match d {
                    0 => "0 (failure)".to_owned(),
                    1 => "1 (success)".to_owned(),
                    d => format!("{d}"),
                };
                let _ = writeln!(out, "  n{i} -> n{t} [label=\"{label}\"];");
            }
        }
        out.push_str("}\n");
        out
    }
}

impl Inner {
    pub(crate) fn member_name(&self, node: u32, member: u32) -> &Arc<str> {
        let Some(n) = self.nodes.get(node as usize) else {
            return &self.name;
        };
        match &n.kind {
            NodeKind::Single(s) | NodeKind::ForEach(s) => &s.name,
            NodeKind::Parallel(v) => v.get(member as usize).map_or(&n.label, |s| &s.name),
        }
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}
