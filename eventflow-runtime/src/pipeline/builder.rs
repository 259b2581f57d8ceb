//! Building a pipeline step by step, and validating it when built.

use std::sync::Arc;

use super::graph::*;
use super::signal::*;
use super::{Inner, Pipeline, PipelineError};
use super::{PipelineEvent, StepDef, StepOptions, registered};

/// Builds a [`Pipeline`] step by step; [`build`](Self::build) validates it.
#[must_use]
pub struct PipelineBuilder {
    pub(crate) name: String,
    pub(crate) nodes: Vec<Node>,
    /// The main line's last node.
    pub(crate) last: Option<usize>,
    pub(crate) max_steps: usize,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    pub(crate) errors: Vec<PipelineError>,
}

impl PipelineBuilder {
    pub(crate) fn push(&mut self, n: Result<Node, PipelineError>) -> Option<usize> {
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

    pub(crate) fn append(mut self, kind: NodeKind, label: String, pipe: bool) -> Self {
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
    pub fn step_named(self, name: &str) -> Self {
        self.then_named(name)
    }

    /// Adds a registered step by name, taking the output of the step before (the same as
    /// [`step_named`](Self::step_named), named like [`then`](Self::then)).
    pub fn then_named(mut self, name: &str) -> Self {
        match self.registered_step(name) {
            Some(step) => self.then(step),
            None => self,
        }
    }

    /// The registered step `name`, or `None` with the error noted for `build`.
    fn registered_step(&mut self, name: &str) -> Option<StepDef> {
        match registered(name) {
            Some(r) => Some((r.make)()),
            None => {
                self.errors.push(PipelineError::UnknownStep {
                    name: name.into(),
                    at: String::new(),
                });
                None
            }
        }
    }

    /// The registered steps `names`, or `None` with an error noted for each unknown one.
    fn registered_steps(&mut self, names: &[&str]) -> Option<Vec<StepDef>> {
        let steps: Vec<Option<StepDef>> = names.iter().map(|n| self.registered_step(n)).collect();
        steps.into_iter().collect()
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

    /// [`parallel`](Self::parallel) of registered steps, by name.
    pub fn parallel_named(mut self, names: &[&str]) -> Self {
        match self.registered_steps(names) {
            Some(steps) => self.parallel(steps),
            None => self,
        }
    }

    /// [`for_each`](Self::for_each) of a registered step, by name.
    pub fn for_each_named(mut self, name: &str) -> Self {
        match self.registered_step(name) {
            Some(step) => self.for_each(step),
            None => self,
        }
    }

    /// The branch taken when the previous step fails: it gets that step's input.
    pub fn on_failure(self, step: StepDef) -> Self {
        self.branch(0, step)
    }

    /// [`on_failure`](Self::on_failure) with a registered step, by name:
    /// `.on_failure_named("refund")`.
    pub fn on_failure_named(self, name: &str) -> Self {
        self.branch_named(0, name)
    }

    /// [`on_failure`](Self::on_failure) with the registered event `E` (a class step):
    /// `.on_failure_step::<Refund>()`.
    pub fn on_failure_step<E: PipelineEvent>(self) -> Self {
        self.branch(0, E::step())
    }

    /// [`branch`](Self::branch) with a registered step, by name.
    pub fn branch_named(mut self, descriptor: u32, name: &str) -> Self {
        match self.registered_step(name) {
            Some(step) => self.branch(descriptor, step),
            None => self,
        }
    }

    /// [`branch`](Self::branch) with the registered event `E`.
    pub fn branch_step<E: PipelineEvent>(self, descriptor: u32) -> Self {
        self.branch(descriptor, E::step())
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
        finish(self.name, self.nodes, self.max_steps, self.observers, &[])
    }
}

/// Validates the nodes and makes the pipeline. `at[i]` says where node `i` is written
/// (` at line L, column C` for Pointy text; none for the builder), for the errors.
pub(crate) fn finish(
    name: String,
    mut nodes: Vec<Node>,
    max_steps: usize,
    observers: Vec<Arc<dyn Observer>>,
    at: &[String],
) -> Result<Pipeline, PipelineError> {
    let at = |i: usize| at.get(i).map_or("", String::as_str);
    if nodes.is_empty() {
        return Err(PipelineError::Invalid(format!(
            "pipeline `{name}` has no step"
        )));
    }
    for (i, n) in nodes.iter().enumerate() {
        let steps: Vec<&StepDef> = match &n.kind {
            NodeKind::Single(s) | NodeKind::ForEach(s) => vec![s],
            NodeKind::Parallel(v) => v.iter().collect(),
        };
        for s in steps {
            if s.options.executor == crate::executor::Executor::Custom && s.pool.is_none() {
                return Err(PipelineError::Invalid(format!(
                    "step `{}`{} runs on Executor::Custom but names no executor: set \
                     ExecutorConfig::custom(..), or `executor = custom(path)`",
                    s.name,
                    at(i)
                )));
            }
        }
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
                    at: at(to).to_owned(),
                });
            }
        }
    }
    // Goto branches against the descriptors steps declare.
    for (i, n) in nodes.iter().enumerate() {
        let gotos = &n.options().gotos;
        if gotos.is_empty() {
            continue;
        }
        for d in gotos.iter() {
            if !n.branches.contains_key(d) {
                return Err(PipelineError::Invalid(format!(
                    "step `{}` may goto {d}, but the pipeline has no branch {d} for it{}",
                    n.label,
                    at(i)
                )));
            }
        }
        for d in n.branches.keys() {
            if *d > 1 && !gotos.contains(d) {
                return Err(PipelineError::Invalid(format!(
                    "branch {d} of step `{}` is never taken: the step declares goto {:?}{}",
                    n.label,
                    gotos.as_ref(),
                    at(i)
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
            "step `{}` cannot be reached{}",
            nodes[i].label,
            at(i)
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

impl std::fmt::Debug for PipelineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder").finish_non_exhaustive()
    }
}
