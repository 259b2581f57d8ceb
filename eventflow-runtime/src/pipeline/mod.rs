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
mod datum;
mod pointy;
#[cfg(unix)]
pub mod process;
#[cfg(not(unix))]
#[path = "process_stub.rs"]
pub mod process;
mod slot;
mod step;

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::error::HandlerError;
use crate::executor::{AbortOnDrop, Executor, panic_message};

pub use pointy::PointyError;
pub use process::serve_process_steps;
use step::{Attempt, GotoRequest};
pub use step::{
    Bypass, Done, EvaluationState, ExecutionContext, Outcome, OutcomeExt, PipelineEvent, Process,
    StepDef, StepError, StepOptions, StepRecord, registered,
};

use datum::{Datum, Input};
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
    #[error("step `{to}` takes `{expected}`, but `{from}` passes `{found}`")]
    TypeMismatch {
        /// The step before.
        from: String,
        /// The step after.
        to: String,
        /// What `to` takes.
        expected: &'static str,
        /// What `from` passes.
        found: &'static str,
    },
    /// Pointy text that does not parse.
    #[error(transparent)]
    Pointy(#[from] PointyError),
    /// Something else: an empty pipeline, a group of mixed types, ...
    #[error("{0}")]
    Invalid(String),
}

enum NodeKind {
    Single(StepDef),
    Parallel(Vec<StepDef>),
    ForEach(StepDef),
}

struct Node {
    label: Arc<str>,
    kind: NodeKind,
    /// Whether the node takes the output of the node before (else that node's input).
    pipe: bool,
    next: Option<usize>,
    branches: BTreeMap<u32, usize>,
    evaluation: EvaluationState,
    input: (TypeId, &'static str),
    output: (TypeId, &'static str),
    /// Where a success goes (the success branch, else the next node), and whether that
    /// node takes this one's output: set when the pipeline is built.
    on_success: Option<usize>,
    success_pipes: bool,
    /// Whether the step may be given its input rather than a clone of it, as nothing reads
    /// that input after it (no retry, no failure branch, no `->` step after it). The run
    /// gives it only when the input is not also the run's output so far.
    give_input: bool,
}

impl Node {
    fn options(&self) -> &StepOptions {
        match &self.kind {
            NodeKind::Single(s) | NodeKind::ForEach(s) => &s.options,
            NodeKind::Parallel(v) => {
                static DEFAULT: StepOptions = StepOptions::DEFAULT;
                v.first().map_or(&DEFAULT, |s| &s.options)
            }
        }
    }
}

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
    status: RunStatus,
    output: Option<Datum>,
    inner: Arc<Inner>,
    raw: Trace,
    finished_at: Duration,
    trace: std::sync::OnceLock<Vec<(Duration, Signal)>>,
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

fn describe(s: &Signal) -> String {
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

/// A validated pipeline; cheap to clone and run many times.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    nodes: Vec<Node>,
    max_steps: usize,
    observers: Vec<Arc<dyn Observer>>,
}

/// Builds a [`Pipeline`] step by step; [`build`](Self::build) validates it.
#[must_use]
pub struct PipelineBuilder {
    name: String,
    nodes: Vec<Node>,
    /// The main line's last node.
    last: Option<usize>,
    max_steps: usize,
    observers: Vec<Arc<dyn Observer>>,
    errors: Vec<PipelineError>,
}

fn node(label: impl Into<Arc<str>>, kind: NodeKind, pipe: bool) -> Result<Node, PipelineError> {
    let label = label.into();
    let (input, output, evaluation) = match &kind {
        NodeKind::Single(s) => (s.input, s.output, s.options.evaluation),
        NodeKind::ForEach(s) => (
            (TypeId::of::<ForEachInput>(), s.input.1),
            (TypeId::of::<TaskOutputs>(), s.output.1),
            s.options.evaluation,
        ),
        NodeKind::Parallel(steps) => {
            let Some(first) = steps.first() else {
                return Err(PipelineError::Invalid("an empty parallel group".into()));
            };
            for s in steps {
                if s.input.0 != first.input.0 {
                    return Err(PipelineError::Invalid(format!(
                        "the steps of a parallel group take one input: `{}` takes `{}`, `{}` takes `{}`",
                        first.name, first.input.1, s.name, s.input.1
                    )));
                }
            }
            (
                first.input,
                (
                    TypeId::of::<TaskOutputs>(),
                    "the outputs of a parallel group",
                ),
                first.options.evaluation,
            )
        }
    };
    Ok(Node {
        label,
        kind,
        pipe,
        next: None,
        branches: BTreeMap::new(),
        evaluation,
        input,
        output,
        on_success: None,
        success_pipes: false,
        give_input: false,
    })
}

/// The outputs of a step of several tasks, in task order (failed tasks left out):
/// take them with [`TaskOutputs::take`].
#[derive(Clone)]
pub struct TaskOutputs(Vec<Arc<dyn Any + Send + Sync>>);

impl TaskOutputs {
    /// The outputs that are `T`s.
    pub fn take<T: Any + Clone>(&self) -> Vec<T> {
        self.0
            .iter()
            .filter_map(|d| d.downcast_ref::<T>().cloned())
            .collect()
    }

    /// How many tasks succeeded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The input of a `for_each` step: one task per item.
#[derive(Clone)]
pub struct ForEachInput(pub Vec<Arc<dyn Any + Send + Sync>>);

impl ForEachInput {
    /// One task per item of `items`.
    pub fn new<T: Any + Send + Sync>(items: Vec<T>) -> Self {
        ForEachInput(
            items
                .into_iter()
                .map(|i| Arc::new(i) as Arc<dyn Any + Send + Sync>)
                .collect(),
        )
    }
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
        run(&self.inner, Datum::new(input))
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

impl PipelineBuilder {
    fn push(&mut self, n: Result<Node, PipelineError>) -> Option<usize> {
        match n {
            Ok(n) => {
                self.nodes.push(n);
                Some(self.nodes.len() - 1)
            }
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn append(mut self, kind: NodeKind, label: String, pipe: bool) -> Self {
        let prev = self.last;
        if let Some(i) = self.push(node(label, kind, pipe)) {
            if let Some(p) = prev {
                self.nodes[p].next = Some(i);
            }
            self.last = Some(i);
        }
        self
    }

    /// Adds a step, taking the output of the step before.
    pub fn then(self, step: StepDef) -> Self {
        let label = step.name.to_string();
        self.append(NodeKind::Single(step), label, true)
    }

    /// Adds the registered event `E`.
    pub fn step<E: PipelineEvent>(self) -> Self {
        self.then(E::step())
    }

    /// Adds a registered step by name.
    pub fn step_named(mut self, name: &str) -> Self {
        match registered(name) {
            Some(r) => self.then((r.make)()),
            None => {
                self.errors.push(PipelineError::UnknownStep {
                    name: name.into(),
                    at: String::new(),
                });
                self
            }
        }
    }

    /// Adds a group of steps run at once on the same input; the group succeeds per the
    /// first step's evaluation state, and passes on its tasks' [`TaskOutputs`].
    pub fn parallel(self, steps: Vec<StepDef>) -> Self {
        let label = steps
            .iter()
            .map(|s| s.name.to_string())
            .collect::<Vec<_>>()
            .join(" || ");
        self.append(NodeKind::Parallel(steps), label, true)
    }

    /// Adds a step run once per item of a [`ForEachInput`]; passes on [`TaskOutputs`].
    pub fn for_each(self, step: StepDef) -> Self {
        let label = format!("for_each({})", step.name);
        self.append(NodeKind::ForEach(step), label, true)
    }

    /// The branch taken when the previous step fails: it gets that step's input.
    pub fn on_failure(self, step: StepDef) -> Self {
        self.branch(0, step)
    }

    /// The branch `descriptor` of the previous step (0 failure, 1 success, others for
    /// `goto`); it ends the run unless it leads on itself.
    pub fn branch(mut self, descriptor: u32, step: StepDef) -> Self {
        let Some(from) = self.last else {
            self.errors.push(PipelineError::Invalid(
                "a branch needs a step before it".into(),
            ));
            return self;
        };
        let label = step.name.to_string();
        if let Some(i) = self.push(node(label, NodeKind::Single(step), descriptor != 0)) {
            self.nodes[from].branches.insert(descriptor, i);
        }
        self
    }

    /// Changes the last step's settings: stop conditions, retries, evaluation.
    pub fn configure(mut self, f: impl Fn(&mut StepOptions)) -> Self {
        if let Some(i) = self.last {
            let n = &mut self.nodes[i];
            match &mut n.kind {
                NodeKind::Single(s) | NodeKind::ForEach(s) => {
                    let mut o = s.options.clone();
                    f(&mut o);
                    *s = s.clone().with_options(o);
                    n.evaluation = s.options.evaluation;
                }
                NodeKind::Parallel(v) => {
                    for s in v.iter_mut() {
                        let mut o = s.options.clone();
                        f(&mut o);
                        *s = s.clone().with_options(o);
                    }
                    n.evaluation = v.first().map_or(n.evaluation, |s| s.options.evaluation);
                }
            }
        }
        self
    }

    /// Bounds the steps of one run (default 100).
    pub fn max_steps(mut self, n: usize) -> Self {
        self.max_steps = n.max(1);
        self
    }

    /// Receives every signal of every run.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Validates: unknown names, type mismatches between steps, unreachable steps.
    pub fn build(self) -> Result<Pipeline, PipelineError> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        finish(self.name, self.nodes, self.max_steps, self.observers)
    }
}

fn finish(
    name: String,
    mut nodes: Vec<Node>,
    max_steps: usize,
    observers: Vec<Arc<dyn Observer>>,
) -> Result<Pipeline, PipelineError> {
    if nodes.is_empty() {
        return Err(PipelineError::Invalid(format!(
            "pipeline `{name}` has no step"
        )));
    }
    // Types along every edge: piped edges take the output, others the input.
    for from in &nodes {
        let mut edges: Vec<(usize, bool)> =
            from.next.map(|n| (n, nodes[n].pipe)).into_iter().collect();
        for (d, t) in &from.branches {
            // Failure branches get the failed step's input; goto branches are checked when
            // they are taken (their result's type is the step's to choose).
            if *d == 0 {
                edges.push((*t, false));
            } else if *d == 1 {
                edges.push((*t, true));
            }
        }
        for (to, piped) in edges {
            let to_node = &nodes[to];
            let passed = if piped { from.output } else { from.input };
            if to_node.input.0 != passed.0 {
                return Err(PipelineError::TypeMismatch {
                    from: from.label.to_string(),
                    to: to_node.label.to_string(),
                    expected: to_node.input.1,
                    found: passed.1,
                });
            }
        }
    }
    // Goto branches against the descriptors steps declare.
    for n in &nodes {
        let gotos = &n.options().gotos;
        if gotos.is_empty() {
            continue;
        }
        for d in gotos.iter() {
            if !n.branches.contains_key(d) {
                return Err(PipelineError::Invalid(format!(
                    "step `{}` may goto {d}, but the pipeline has no branch {d} for it",
                    n.label
                )));
            }
        }
        for d in n.branches.keys() {
            if *d > 1 && !gotos.contains(d) {
                return Err(PipelineError::Invalid(format!(
                    "branch {d} of step `{}` is never taken: the step declares goto {:?}",
                    n.label,
                    gotos.as_ref()
                )));
            }
        }
    }
    // Every node is reached from the first.
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        stack.extend(nodes[i].next);
        stack.extend(nodes[i].branches.values().copied());
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(PipelineError::Invalid(format!(
            "step `{}` cannot be reached",
            nodes[i].label
        )));
    }
    for i in 0..nodes.len() {
        // A success branch takes the step's output (as checked above), whatever the
        // target's own place on the main line; the next node takes what its arrow says.
        let (on_success, success_pipes) = match (nodes[i].branches.get(&1), nodes[i].next) {
            (Some(&to), _) => (Some(to), true),
            (None, next) => (next, next.is_some_and(|to| nodes[to].pipe)),
        };
        let n = &mut nodes[i];
        n.on_success = on_success;
        n.success_pipes = success_pipes;
        n.give_input = match &n.kind {
            NodeKind::Single(s) => {
                s.options.retry.max_attempts <= 1
                    && !n.branches.contains_key(&0)
                    && (on_success.is_none() || success_pipes)
            }
            _ => false,
        };
    }
    crate::util::calibrate_clock();
    Ok(Pipeline {
        inner: Arc::new(Inner {
            name: name.into(),
            nodes,
            max_steps,
            observers,
        }),
    })
}

/// A trace entry as a run records it: the common signals by index, named when the trace
/// is read (or when an observer is listening), so that recording costs no string work;
/// small, so that recording costs little copying. (The run's end is its status.)
enum Ev {
    PipelineStarted,
    StepStarted {
        node: u32,
        member: u32,
        attempt: u32,
    },
    /// A plain step whose first attempt succeeded, recorded when it ended with the time it
    /// started (one entry for its StepStarted and StepFinished, when no observer listens).
    StepRan {
        node: u32,
        /// Nanoseconds.
        took: u64,
    },
    /// A step that succeeded, the common case.
    StepSucceeded {
        node: u32,
        tasks: u32,
        /// Nanoseconds.
        took: u64,
    },
    StepFinished(Box<(u32, StepStatus, u32, Duration)>),
    Other(Box<Signal>),
}

impl Ev {
    fn signal(&self, inner: &Inner) -> Signal {
        match self {
            Ev::PipelineStarted => Signal::PipelineStarted {
                pipeline: inner.name.clone(),
            },
            Ev::StepStarted {
                node,
                member,
                attempt,
            } => Signal::StepStarted {
                step: inner.member_name(*node, *member).clone(),
                attempt: *attempt,
            },
            // Read as two signals by `PipelineRun::trace`; as one, its end.
            Ev::StepRan { node, took } => Signal::StepFinished {
                step: inner.nodes[*node as usize].label.clone(),
                status: StepStatus::Succeeded,
                tasks: 1,
                took: Duration::from_nanos(*took),
            },
            Ev::StepSucceeded { node, tasks, took } => Signal::StepFinished {
                step: inner.nodes[*node as usize].label.clone(),
                status: StepStatus::Succeeded,
                tasks: *tasks as usize,
                took: Duration::from_nanos(*took),
            },
            Ev::StepFinished(f) => Signal::StepFinished {
                step: inner.nodes[f.0 as usize].label.clone(),
                status: f.1.clone(),
                tasks: f.2 as usize,
                took: f.3,
            },
            Ev::Other(s) => (**s).clone(),
        }
    }
}

impl Inner {
    fn member_name(&self, node: u32, member: u32) -> &Arc<str> {
        let Some(n) = self.nodes.get(node as usize) else {
            return &self.name;
        };
        match &n.kind {
            NodeKind::Single(s) | NodeKind::ForEach(s) => &s.name,
            NodeKind::Parallel(v) => v.get(member as usize).map_or(&n.label, |s| &s.name),
        }
    }
}

/// The values a run's steps share, and the one context handed from step to step (made
/// again when an attempt loses it by panicking or timing out).
#[derive(Default)]
struct Contexts {
    shared: Shared,
    spare: Option<ExecutionContext>,
}

impl Contexts {
    #[inline]
    fn lend(&mut self, inner: &Arc<Inner>, at: (u32, u32), attempt: u32) -> ExecutionContext {
        let mut ctx = self
            .spare
            .take()
            .unwrap_or_else(|| ExecutionContext::in_run(inner.clone()));
        ctx.place(at, attempt, self.shared.as_ref());
        ctx
    }

    #[inline]
    fn give_back(&mut self, ctx: ExecutionContext) {
        if self.shared.is_none() {
            self.shared = ctx.shared_map().cloned();
        }
        self.spare = Some(ctx);
    }

    /// The shared values, made now if no step has stored any yet (for tasks run at once).
    fn shared_now(&mut self) -> step::SharedMap {
        self.shared.get_or_insert_with(Default::default).clone()
    }
}

/// Entries with their time in nanoseconds since the run began.
type Trace = Vec<(u64, Ev)>;

/// Tells observers of each signal and records it in the trace the caller holds (each task
/// of a parallel step has its own, merged after; no lock on the way).
struct Recorder<'a> {
    /// The TSC where it is steady (about a third of the cost of the system clock on
    /// virtual machines), the system's monotonic clock elsewhere.
    start: u64,
    clock: &'static quanta::Clock,
    inner: &'a Arc<Inner>,
}

impl Recorder<'_> {
    /// Since the run began. (Reading the clock is a large part of a run of quick steps,
    /// so a run reads it about once per step and passes the time around.)
    #[inline]
    fn now(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }

    fn emit(&self, trace: &mut Trace, s: Signal) {
        self.emit_at(trace, self.now(), Ev::Other(Box::new(s)))
    }

    #[inline]
    fn emit_at(&self, trace: &mut Trace, at: u64, ev: Ev) {
        if !self.inner.observers.is_empty() {
            self.notify_ev(&ev);
        }
        trace.push((at, ev));
    }

    #[cold]
    fn notify_ev(&self, ev: &Ev) {
        self.notify(&ev.signal(self.inner));
    }

    fn notify(&self, s: &Signal) {
        for o in &self.inner.observers {
            o.on_signal(s);
        }
    }
}

/// What a node did.
struct NodeOutcome {
    status: StepStatus,
    output: Option<Datum>,
    goto: Option<Box<GotoRequest>>,
    tasks: usize,
}

async fn run(inner: &Arc<Inner>, input: Datum) -> PipelineRun {
    let rec = Recorder {
        start: crate::util::clock().raw(),
        clock: crate::util::clock(),
        inner,
    };
    let mut trace: Trace = Vec::with_capacity(2 + 2 * inner.nodes.len());
    rec.emit_at(&mut trace, 0, Ev::PipelineStarted);
    // Each step starts when the one before finished.
    let mut started = 0u64;
    let mut ctxs = Contexts::default();
    // Where a plain Inline step's future lives while it runs: made there, polled there.
    let mut slot = std::pin::pin!(slot::Slot::new());
    let mut at = 0usize;
    let mut carry = Carry {
        data: input,
        last: None,
        data_is_last: false,
    };
    let mut steps = 0usize;
    let status = loop {
        steps += 1;
        let node = &inner.nodes[at];
        if steps > inner.max_steps {
            break RunStatus::Failed {
                step: node.label.to_string(),
                message: format!(
                    "the run reached its limit of {} steps (a loop?)",
                    inner.max_steps
                ),
            };
        }
        // A plain Inline step's future is awaited right here, with nothing between it and
        // the run, and a success goes straight on to the next step. Anything else (other
        // executors, retries, steps of several tasks) goes through a boxed driver, so that
        // the run's own future stays small.
        let ids = (at as u32, 0);
        let out = match &node.kind {
            NodeKind::Single(step) => match step
                .bypass
                .as_ref()
                .and_then(|_| bypassed(step, ids, &mut ctxs, &rec, &mut trace))
            {
                Some(out) => out,
                None => {
                    let (status, output, goto) = if step.options.executor == Executor::Inline
                        && step.options.timeout.is_none()
                    {
                        // Unless an observer listens, the start is recorded when the
                        // attempt ends: with the end when it succeeded, on its own otherwise.
                        let observed = !inner.observers.is_empty();
                        let ctx = if observed {
                            start_attempt(ids, 1, &mut ctxs, &rec, started, &mut trace)
                        } else {
                            ctxs.lend(inner, ids, 1)
                        };
                        // The input is given to the step, not cloned for it, when nothing
                        // reads it after the step.
                        let input = if node.give_input && !carry.data_is_last {
                            Input::Given(&mut carry.data)
                        } else {
                            Input::Lent(&carry.data)
                        };
                        let (attempt, ctx) = attempt_in(step, input, ctx, slot.as_mut()).await;
                        if let Some(ctx) = ctx {
                            ctxs.give_back(ctx);
                        }
                        match attempt {
                            Attempt::Success(output) if !step.options.stop_on_success => {
                                let finished = rec.now();
                                let took = finished.saturating_sub(started);
                                if observed {
                                    let ev = Ev::StepSucceeded {
                                        node: ids.0,
                                        tasks: 1,
                                        took,
                                    };
                                    rec.emit_at(&mut trace, finished, ev);
                                } else {
                                    let ev = Ev::StepRan { node: ids.0, took };
                                    trace.push((started, ev));
                                }
                                started = finished;
                                carry.keep(output, node.success_pipes);
                                match node.on_success {
                                    Some(to) => {
                                        at = to;
                                        continue;
                                    }
                                    None => break RunStatus::Completed,
                                }
                            }
                            attempt => {
                                if !observed {
                                    let ev = Ev::StepStarted {
                                        node: ids.0,
                                        member: 0,
                                        attempt: 1,
                                    };
                                    trace.push((started, ev));
                                }
                                match task_result(attempt) {
                                    Ok(r) => r,
                                    Err(e) => {
                                        Box::pin(retry_task(
                                            step,
                                            ids,
                                            &carry.data,
                                            &mut ctxs,
                                            &rec,
                                            &mut trace,
                                            e,
                                        ))
                                        .await
                                    }
                                }
                            }
                        }
                    } else {
                        Box::pin(run_task(
                            step,
                            ids,
                            &carry.data,
                            &mut ctxs,
                            &rec,
                            started,
                            &mut trace,
                        ))
                        .await
                    };
                    NodeOutcome {
                        status,
                        output,
                        goto,
                        tasks: 1,
                    }
                }
            },
            NodeKind::Parallel(steps) => {
                // The tasks run at once, so they share one map from the start.
                let shared = ctxs.shared_now();
                let tasks: Vec<_> = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let data = &carry.data;
                        run_task_owned(s, (ids.0, i as u32), data, shared.clone(), &rec, started)
                    })
                    .collect();
                Box::pin(many(tasks, node.evaluation, &mut trace)).await
            }
            NodeKind::ForEach(step) => match carry.data.downcast_ref::<ForEachInput>() {
                Some(items) => {
                    let shared = ctxs.shared_now();
                    let items: Vec<Datum> = items.0.iter().cloned().map(Datum::shared).collect();
                    let tasks: Vec<_> = items
                        .iter()
                        .map(|item| run_task_owned(step, ids, item, shared.clone(), &rec, started))
                        .collect();
                    Box::pin(many(tasks, node.evaluation, &mut trace)).await
                }
                None => NodeOutcome {
                    status: StepStatus::Raised(format!(
                        "for_each({}) takes a ForEachInput",
                        step.name
                    )),
                    output: None,
                    goto: None,
                    tasks: 0,
                },
            },
        };
        let finished = rec.now();
        let took = finished.saturating_sub(started);
        let ev = match &out.status {
            StepStatus::Succeeded => Ev::StepSucceeded {
                node: at as u32,
                tasks: out.tasks as u32,
                took,
            },
            other => Ev::StepFinished(Box::new((
                at as u32,
                other.clone(),
                out.tasks as u32,
                Duration::from_nanos(took),
            ))),
        };
        rec.emit_at(&mut trace, finished, ev);
        started = finished;
        if let Some(g) = out.goto {
            match node.branches.get(&g.descriptor) {
                Some(&to) => {
                    rec.emit(
                        &mut trace,
                        Signal::Goto {
                            from: node.label.clone(),
                            descriptor: g.descriptor,
                            to: inner.nodes[to].label.clone(),
                            reason: g.reason,
                        },
                    );
                    let _ = g.success;
                    at = to;
                    carry.switch(g.result);
                    continue;
                }
                None => {
                    break RunStatus::Failed {
                        step: node.label.to_string(),
                        message: format!("goto {} names no branch of this step", g.descriptor),
                    };
                }
            }
        }
        let opts = node.options();
        let (success, raised, message) = match &out.status {
            StepStatus::Succeeded | StepStatus::Bypassed => (true, false, String::new()),
            StepStatus::Failed(m) => (false, false, m.clone()),
            StepStatus::Raised(m) => (false, true, m.clone()),
            StepStatus::Switched(_) => (true, false, String::new()),
        };
        let stop = if success && opts.stop_on_success {
            Some(StopReason::Success)
        } else if raised && opts.stop_on_exception {
            Some(StopReason::Exception)
        } else if !success && !raised && opts.stop_on_error {
            Some(StopReason::Error)
        } else {
            None
        };
        let next = if success {
            node.on_success
        } else {
            node.branches.get(&0).copied()
        };
        if success && let Some(o) = out.output {
            carry.keep(o, stop.is_none() && node.success_pipes);
        }
        if let Some(reason) = stop {
            break RunStatus::Stopped {
                step: node.label.to_string(),
                reason,
            };
        }
        match next {
            Some(to) => at = to,
            None if success => break RunStatus::Completed,
            None => {
                break RunStatus::Failed {
                    step: node.label.to_string(),
                    message,
                };
            }
        }
    };
    // The run's own reference to the pipeline is the one its context held.
    let owner = ctxs.spare.take().and_then(ExecutionContext::recycle);
    if !inner.observers.is_empty() {
        rec.notify(&Signal::PipelineFinished {
            pipeline: inner.name.clone(),
            status: status.clone(),
        });
    }
    PipelineRun {
        status,
        output: carry.output(),
        inner: owner.unwrap_or_else(|| inner.clone()),
        raw: trace,
        finished_at: Duration::from_nanos(started),
        trace: std::sync::OnceLock::new(),
    }
}

/// What the next step takes, and the run's output so far. A step gets a clone of `data`,
/// so that it is still here for a retry, a failure branch, or a `->` step after; or, when
/// nothing reads it after the step (`Node::give_input`), the value itself.
struct Carry {
    data: Datum,
    /// The last successful step's output, unless that is `data` itself (piped on, so that
    /// there is no second reference to count).
    last: Option<Datum>,
    data_is_last: bool,
}

impl Carry {
    /// A successful step's output: the next step's input when `piped`, else kept as the
    /// run's output while the next step takes the same input.
    #[inline]
    fn keep(&mut self, output: Datum, piped: bool) {
        if piped {
            self.data = output;
            self.data_is_last = true;
            self.last = None;
        } else {
            self.last = Some(output);
            self.data_is_last = false;
        }
    }

    /// A goto: the next step takes `input`.
    fn switch(&mut self, input: Datum) {
        let before = std::mem::replace(&mut self.data, input);
        if std::mem::take(&mut self.data_is_last) {
            self.last = Some(before);
        }
    }

    /// The run's output.
    #[inline]
    fn output(self) -> Option<Datum> {
        if self.data_is_last {
            Some(self.data)
        } else {
            self.last
        }
    }
}

/// What one task made of its step: its status, output and goto.
type TaskResult = (StepStatus, Option<Datum>, Option<Box<GotoRequest>>);

/// One task of a step of several, with its own trace.
async fn run_task_owned(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    shared: step::SharedMap,
    rec: &Recorder<'_>,
    started: u64,
) -> (TaskResult, Trace) {
    let mut trace = Vec::new();
    let mut ctxs = Contexts {
        shared: Some(shared),
        spare: None,
    };
    let r = run_task(step, ids, data, &mut ctxs, rec, started, &mut trace).await;
    (r, trace)
}

/// Asks the step's `can_bypass`; the step's outcome when it says skip.
fn bypassed(
    step: &StepDef,
    at: (u32, u32),
    ctxs: &mut Contexts,
    rec: &Recorder<'_>,
    trace: &mut Trace,
) -> Option<NodeOutcome> {
    let bypass = step.bypass.as_ref()?;
    let ctx = ctxs.lend(rec.inner, at, 0);
    let decision = bypass(&ctx);
    ctxs.give_back(ctx);
    let Bypass::Skip { data, reason } = decision else {
        return None;
    };
    rec.emit(
        trace,
        Signal::StepBypassed {
            step: step.name.clone(),
            reason,
        },
    );
    Some(NodeOutcome {
        status: StepStatus::Bypassed,
        output: Some(Datum::shared(Arc::from(data))),
        goto: None,
        tasks: 0,
    })
}

/// Runs the tasks of a step at once and decides per `evaluation`.
async fn many<F>(tasks: Vec<F>, evaluation: EvaluationState, trace: &mut Trace) -> NodeOutcome
where
    F: std::future::Future<Output = (TaskResult, Trace)>,
{
    let mark = trace.len();
    let total = tasks.len();
    let mut running: FuturesUnordered<_> = tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| async move { (i, t.await) })
        .collect();
    let mut results: Vec<Option<(StepStatus, Option<Datum>)>> = (0..total).map(|_| None).collect();
    let mut first_failure = None;
    while let Some((i, ((status, output, _goto), task_trace))) = running.next().await {
        trace.extend(task_trace);
        let ok = status == StepStatus::Succeeded;
        if !ok && first_failure.is_none() {
            first_failure = Some(format!("{status:?}"));
        }
        results[i] = Some((status, output));
        if !ok && evaluation == EvaluationState::FailureForPartialError {
            // The rest are cancelled when `running` is dropped.
            break;
        }
    }
    drop(running);
    // The tasks' signals, in time order.
    trace[mark..].sort_by_key(|(at, _)| *at);
    let done: Vec<_> = results.into_iter().flatten().collect();
    let ok = done
        .iter()
        .filter(|(s, _)| *s == StepStatus::Succeeded)
        .count();
    let outputs = TaskOutputs(
        done.into_iter()
            .filter_map(|(_, o)| o.and_then(Datum::into_shared))
            .collect(),
    );
    let success =
        if evaluation == EvaluationState::FailureForPartialError && first_failure.is_some() {
            false
        } else {
            evaluation.decide(ok, total)
        };
    NodeOutcome {
        status: if success {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed(format!(
                "{ok} of {total} task(s) succeeded ({evaluation:?}){}",
                first_failure
                    .map(|f| format!("; first failure: {f}"))
                    .unwrap_or_default()
            ))
        },
        output: Some(Datum::new(outputs)),
        goto: None,
        tasks: total,
    }
}

/// One task of a step: its first attempt, then retries on exceptions. (The retries are a
/// boxed future of their own, so that a run of steps that succeed carries no timer.)
#[allow(clippy::too_many_arguments)]
async fn run_task(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    ctxs: &mut Contexts,
    rec: &Recorder<'_>,
    started: u64,
    trace: &mut Trace,
) -> TaskResult {
    let ctx = start_attempt(ids, 1, ctxs, rec, started, trace);
    let (outcome, ctx) = attempt_once(step, data, ctx).await;
    if let Some(ctx) = ctx {
        ctxs.give_back(ctx);
    }
    match task_result(outcome) {
        Ok(r) => r,
        Err(e) => Box::pin(retry_task(step, ids, data, ctxs, rec, trace, e)).await,
    }
}

/// Records an attempt's start and gives it its context.
#[allow(clippy::too_many_arguments)]
fn start_attempt(
    (node, member): (u32, u32),
    attempt: u32,
    ctxs: &mut Contexts,
    rec: &Recorder<'_>,
    at: u64,
    trace: &mut Trace,
) -> ExecutionContext {
    rec.emit_at(
        trace,
        at,
        Ev::StepStarted {
            node,
            member,
            attempt,
        },
    );
    ctxs.lend(rec.inner, (node, member), attempt)
}

/// What an attempt makes of the task, or the exception it raised.
fn task_result(outcome: Attempt) -> Result<TaskResult, StepError> {
    match outcome {
        Attempt::Success(v) => Ok((StepStatus::Succeeded, Some(v), None)),
        Attempt::Failure(m) => Ok((StepStatus::Failed(m), None, None)),
        Attempt::Goto(g) => Ok((StepStatus::Switched(g.descriptor), None, Some(g))),
        Attempt::Exception(e) => Err(e),
    }
}

/// After the first attempt raised `error`: retries while the step's policy says so.
#[allow(clippy::too_many_arguments)]
async fn retry_task(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    ctxs: &mut Contexts,
    rec: &Recorder<'_>,
    trace: &mut Trace,
    mut error: StepError,
) -> TaskResult {
    let mut attempt = 1;
    while step.options.retry.should_retry(&error, attempt) {
        let delay = step.options.retry.delay(attempt);
        rec.emit(
            trace,
            Signal::StepRetried {
                step: step.name.clone(),
                attempt,
                error: error.to_string(),
                delay,
            },
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
        let ctx = start_attempt(ids, attempt, ctxs, rec, rec.now(), trace);
        let (outcome, ctx) = attempt_once(step, data, ctx).await;
        if let Some(ctx) = ctx {
            ctxs.give_back(ctx);
        }
        match task_result(outcome) {
            Ok(r) => return r,
            Err(e) => error = e,
        }
    }
    (StepStatus::Raised(error.to_string()), None, None)
}

/// An attempt's result, and its context unless the attempt lost it (a panic, a timeout:
/// then what it stored there is lost with it, unless an earlier step had stored values).
type Attempted = (Attempt, Option<ExecutionContext>);

fn panicked(p: Box<dyn Any + Send>) -> Attempted {
    (
        Attempt::Exception(HandlerError::panicked(panic_message(&*p))),
        None,
    )
}

/// An attempt whose future is not there to poll (polled after it ended).
fn no_future() -> Attempted {
    (
        Attempt::Exception(HandlerError::msg("the step's future is gone")),
        None,
    )
}

/// One attempt of a plain Inline step, its future made in `slot` and polled there: one
/// guard against panics covers making the future and each poll of it. (A plain function
/// returning the poller, not an `async fn`, so that the result is not passed up through
/// one more future.)
fn attempt_in<'a>(
    step: &'a StepDef,
    data: Input<'a>,
    ctx: ExecutionContext,
    mut slot: std::pin::Pin<&'a mut slot::Slot>,
) -> impl std::future::Future<Output = Attempted> + 'a {
    use std::task::Poll;
    let mut start = Some((data, ctx));
    std::future::poll_fn(move |cx| {
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some((data, ctx)) = start.take() {
                slot.as_mut().fill_with(|v| (step.run)(data, ctx, v));
            }
            slot.as_mut().poll(cx)
        }));
        let attempted = match r {
            Ok(Some(Poll::Pending)) => return Poll::Pending,
            Ok(Some(Poll::Ready((a, ctx)))) => (a, Some(ctx)),
            // Polled again after it ended: cannot happen, as a future is not polled after
            // it is ready.
            Ok(None) => no_future(),
            Err(p) => panicked(p),
        };
        slot.as_mut().clear();
        Poll::Ready(attempted)
    })
}

/// One attempt on the step's executor, with its timeout; a panic is an exception. The
/// common case (Inline, no timeout) goes through [`attempt_in`] with a slot of its own;
/// the others through a boxed driver, so that this future stays small.
async fn attempt_once(step: &StepDef, data: &Datum, ctx: ExecutionContext) -> Attempted {
    if step.options.executor != Executor::Inline || step.options.timeout.is_some() {
        return Box::pin(attempt_elsewhere(step, data, ctx)).await;
    }
    let slot = std::pin::pin!(slot::Slot::new());
    attempt_in(step, Input::Lent(data), ctx, slot).await
}

async fn attempt_elsewhere(step: &StepDef, data: &Datum, ctx: ExecutionContext) -> Attempted {
    if step.options.executor == Executor::Process {
        // The child runs the step; the context's shared values do not cross.
        let attempt = match (&step.processes, step.codec) {
            (Some(pool), Some(codec)) => {
                pool.run(&step.name, codec, data, step.options.timeout)
                    .await
            }
            _ => Attempt::Exception(HandlerError::permanent_msg(format!(
                "step `{}` runs on the Process executor but cannot cross processes: build it with `.with_serde::<I, O>()`",
                step.name
            ))),
        };
        return (attempt, Some(ctx));
    }
    let fut =
        match std::panic::catch_unwind(AssertUnwindSafe(|| step.start(Input::Lent(data), ctx))) {
            Ok(f) => f,
            Err(p) => return panicked(p),
        };
    let caught = async move {
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(Some((a, ctx))) => (a, Some(ctx)),
            Ok(None) => no_future(),
            Err(p) => panicked(p),
        }
    };
    let timeout = step.options.timeout;
    let bounded = async move {
        crate::executor::bounded(timeout, caught)
            .await
            .unwrap_or_else(|timed_out| (Attempt::Exception(timed_out), None))
    };
    match (step.options.executor, &step.pool) {
        // Aborted when this attempt is dropped (a run given up on), as a handler's is.
        (Executor::Tokio, _) => AbortOnDrop::spawn(bounded)
            .join()
            .await
            .unwrap_or_else(|ended| (Attempt::Exception(ended), None)),
        (Executor::ThreadPool, Some(pool)) => {
            let rt = tokio::runtime::Handle::current();
            match pool.run(move || rt.block_on(bounded)).await {
                Ok(a) => a,
                Err(p) => (Attempt::Exception(HandlerError::panicked(p.0)), None),
            }
        }
        _ => bounded.await,
    }
}
