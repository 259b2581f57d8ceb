//! Running a pipeline: the loop over its nodes, the trace it writes, and what passes
//! from one step to the next.

use std::sync::Arc;
use std::time::Duration;

use crate::executor::Executor;

use crate::pipeline::ExecutionContext;
use crate::pipeline::datum::{Datum, Input};
use crate::pipeline::graph::*;
use crate::pipeline::signal::*;
use crate::pipeline::step::{self, Attempt, GotoRequest};
use crate::pipeline::{Inner, Shared};

mod attempt;
mod carry;
mod group;

pub(crate) use carry::Carry;

pub(crate) use attempt::*;
pub(crate) use group::*;

/// A trace entry as a run records it: the common signals by index, named when the trace
/// is read (or when an observer is listening), so that recording costs no string work;
/// small, so that recording costs little copying. (The run's end is its status.)
pub(crate) enum Ev {
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
    pub(crate) fn signal(&self, inner: &Inner) -> Signal {
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

/// The values a run's steps share, and the one context handed from step to step (made
/// again when an attempt loses it by panicking or timing out).
#[derive(Default)]
pub(crate) struct Contexts {
    pub(crate) shared: Shared,
    pub(crate) spare: Option<ExecutionContext>,
}

impl Contexts {
    #[inline]
    pub(crate) fn lend(
        &mut self,
        inner: &Arc<Inner>,
        at: (u32, u32),
        attempt: u32,
    ) -> ExecutionContext {
        let mut ctx = self
            .spare
            .take()
            .unwrap_or_else(|| ExecutionContext::in_run(inner.clone()));
        ctx.place(at, attempt, self.shared.as_ref());
        ctx
    }

    #[inline]
    pub(crate) fn give_back(&mut self, ctx: ExecutionContext) {
        if self.shared.is_none() {
            self.shared = ctx.shared_map().cloned();
        }
        self.spare = Some(ctx);
    }

    /// The shared values, made now if no step has stored any yet (for tasks run at once).
    pub(crate) fn shared_now(&mut self) -> step::SharedMap {
        self.shared.get_or_insert_with(Default::default).clone()
    }
}

/// Entries with their time in nanoseconds since the run began.
pub(crate) type Trace = Vec<(u64, Ev)>;

/// Tells observers of each signal and records it in the trace the caller holds (each task
/// of a parallel step has its own, merged after; no lock on the way).
pub(crate) struct TraceWriter<'a> {
    /// The TSC where it is steady (about a third of the cost of the system clock on
    /// virtual machines), the system's monotonic clock elsewhere.
    pub(crate) start: u64,
    pub(crate) clock: &'static quanta::Clock,
    pub(crate) inner: &'a Arc<Inner>,
}

impl TraceWriter<'_> {
    /// Since the run began. (Reading the clock is a large part of a run of quick steps,
    /// so a run reads it about once per step and passes the time around.)
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }

    pub(crate) fn emit(&self, trace: &mut Trace, s: Signal) {
        self.emit_at(trace, self.now(), Ev::Other(Box::new(s)))
    }

    #[inline]
    pub(crate) fn emit_at(&self, trace: &mut Trace, at: u64, ev: Ev) {
        if !self.inner.observers.is_empty() {
            self.notify_ev(&ev);
        }
        trace.push((at, ev));
    }

    #[cold]
    pub(crate) fn notify_ev(&self, ev: &Ev) {
        self.notify(&ev.signal(self.inner));
    }

    pub(crate) fn notify(&self, s: &Signal) {
        for o in &self.inner.observers {
            o.on_signal(s);
        }
    }
}

/// What a node did.
pub(crate) struct NodeOutcome {
    pub(crate) status: StepStatus,
    pub(crate) output: Option<Datum>,
    pub(crate) goto: Option<Box<GotoRequest>>,
    pub(crate) tasks: usize,
}

pub(crate) async fn run(inner: &Arc<Inner>, input: Datum) -> PipelineRun {
    let rec = TraceWriter {
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
    let mut slot = std::pin::pin!(step::StepSlot::new());
    let mut at = 0usize;
    let mut carry = Carry {
        data: input,
        last: None,
        data_is_last: false,
    };
    let mut steps = 0usize;
    // The first step that went to a branch with `goto(.., success = false, ..)`: the run
    // fails with it once the branch has run.
    let mut failed_goto: Option<(String, String)> = None;
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
        let mut out = match &node.kind {
            NodeKind::Single(step) => match step
                .bypass
                .as_ref()
                .and_then(|_| bypassed(step, &carry.data, ids, &mut ctxs, &rec, &mut trace))
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
                                    None => break completed(&mut failed_goto),
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
        // A goto with `success = false` is the step failing, in the trace as elsewhere.
        if let Some(g) = out.goto.as_ref().filter(|g| !g.success) {
            out.status = StepStatus::Failed(format!("goto {}: {}", g.descriptor, g.reason));
        }
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
                    let failed =
                        (!g.success).then(|| format!("goto {}: {}", g.descriptor, g.reason));
                    rec.emit(
                        &mut trace,
                        Signal::Goto {
                            from: node.label.clone(),
                            descriptor: g.descriptor,
                            to: inner.nodes[to].label.clone(),
                            reason: g.reason,
                        },
                    );
                    if let Some(message) = failed {
                        if node.options().stop_on_error {
                            break RunStatus::Stopped {
                                step: node.label.to_string(),
                                reason: StopReason::Error,
                            };
                        }
                        failed_goto.get_or_insert((node.label.to_string(), message));
                    }
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
            None if success => break completed(&mut failed_goto),
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

/// How a run that reached its end finished: failed, if a step went to its branch with
/// `goto(.., success = false, ..)`, else completed.
fn completed(failed_goto: &mut Option<(String, String)>) -> RunStatus {
    match failed_goto.take() {
        Some((step, message)) => RunStatus::Failed { step, message },
        None => RunStatus::Completed,
    }
}
