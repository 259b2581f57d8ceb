//! The graph a pipeline is built into: its nodes and what each runs, and the values a
//! step of several tasks passes on.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::PipelineError;
use super::{EvaluationState, StepDef, StepOptions};

pub(crate) enum NodeKind {
    Single(StepDef),
    Parallel(Vec<StepDef>),
    ForEach(StepDef),
}

pub(crate) struct Node {
    pub(crate) label: Arc<str>,
    pub(crate) kind: NodeKind,
    /// Whether the node takes the output of the node before (else that node's input).
    pub(crate) pipe: bool,
    pub(crate) next: Option<usize>,
    pub(crate) branches: BTreeMap<u32, usize>,
    pub(crate) evaluation: EvaluationState,
    pub(crate) input: (TypeId, &'static str),
    pub(crate) output: (TypeId, &'static str),
    /// Where a success goes (the success branch, else the next node), and whether that
    /// node takes this one's output: set when the pipeline is built.
    pub(crate) on_success: Option<usize>,
    pub(crate) success_pipes: bool,
    /// Whether the step may be given its input rather than a clone of it, as nothing reads
    /// that input after it (no retry, no failure branch, no `->` step after it). The run
    /// gives it only when the input is not also the run's output so far.
    pub(crate) give_input: bool,
}

impl Node {
    pub(crate) fn options(&self) -> &StepOptions {
        match &self.kind {
            NodeKind::Single(s) | NodeKind::ForEach(s) => &s.options,
            NodeKind::Parallel(v) => {
                static DEFAULT: StepOptions = StepOptions::DEFAULT;
                v.first().map_or(&DEFAULT, |s| &s.options)
            }
        }
    }
}

pub(crate) fn node(
    label: impl Into<Arc<str>>,
    kind: NodeKind,
    pipe: bool,
) -> Result<Node, PipelineError> {
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
pub struct TaskOutputs(pub(crate) Vec<Arc<dyn Any + Send + Sync>>);

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

impl std::fmt::Debug for TaskOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskOutputs").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ForEachInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForEachInput").finish_non_exhaustive()
    }
}
