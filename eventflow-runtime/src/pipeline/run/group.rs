//! Steps of several tasks (parallel groups and one event over a batch), and bypasses.

use futures::stream::{FuturesUnordered, StreamExt};

use super::*;
use crate::pipeline::datum::Datum;
use crate::pipeline::step::{self, GotoRequest};
use crate::pipeline::{EvaluationState, StepDef};

/// What one task made of its step: its status, output and goto.
pub(crate) type TaskResult = (StepStatus, Option<Datum>, Option<Box<GotoRequest>>);

/// One task of a step of several, with its own trace.
pub(crate) async fn run_task_owned(
    step: &StepDef,
    ids: (u32, u32),
    data: &Datum,
    shared: step::SharedMap,
    rec: &TraceWriter<'_>,
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
pub(crate) fn bypassed(
    step: &StepDef,
    input: &Datum,
    at: (u32, u32),
    ctxs: &mut Contexts,
    rec: &TraceWriter<'_>,
    trace: &mut Trace,
) -> Option<NodeOutcome> {
    let bypass = step.bypass.as_ref()?;
    let ctx = ctxs.lend(rec.inner, at, 0);
    let decision = bypass(&ctx, input);
    ctxs.give_back(ctx);
    let (data, reason) = decision?;
    rec.emit(
        trace,
        Signal::StepBypassed {
            step: step.name.clone(),
            reason,
        },
    );
    Some(NodeOutcome {
        status: StepStatus::Bypassed,
        output: Some(data),
        goto: None,
        tasks: 0,
    })
}

/// Runs the tasks of a step at once and decides per `evaluation`.
pub(crate) async fn many<F>(
    tasks: Vec<F>,
    evaluation: EvaluationState,
    trace: &mut Trace,
) -> NodeOutcome
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
