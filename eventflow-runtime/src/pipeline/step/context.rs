//! The context a step runs in: its place in the run, its attempt, the values the run's
//! steps share, and `goto`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::*;
use crate::pipeline::datum::Datum;

/// The values the steps of one run share.
pub(crate) type SharedMap = Arc<RwLock<HashMap<String, Arc<dyn Any + Send + Sync>>>>;

/// A pending `goto`.
pub(crate) struct GotoRequest {
    pub(crate) descriptor: u32,
    pub(crate) success: bool,
    pub(crate) result: Datum,
    pub(crate) reason: String,
}

/// What steps share during one run, and what one step asks of the run.
///
/// One pointer wide: it is handed to each step and back, so it is cheap to move.
pub struct ExecutionContext {
    pub(crate) state: Box<State>,
}

pub(crate) struct State {
    /// Made on the first `set` of the run (so that a run whose steps share nothing pays
    /// nothing for it), then handed from step to step.
    pub(crate) shared: OnceLock<SharedMap>,
    pub(crate) goto: Option<Box<GotoRequest>>,
    pub(crate) step: StepRef,
    pub(crate) attempt: u32,
}

/// Which step a context is for.
pub(crate) enum StepRef {
    /// A step of a pipeline run: one context goes from step to step, so the name is looked
    /// up when asked for rather than copied in at each step.
    InRun {
        names: Arc<crate::pipeline::Inner>,
        node: u32,
        member: u32,
    },
    /// A step run on its own (in a Process executor's child).
    Alone(Arc<str>),
    /// Kept for the next run ([`ExecutionContext::recycle`]).
    Idle,
}

std::thread_local! {
    /// A context's state from a run that ended on this thread, for the next run to reuse:
    /// one allocation fewer per run.
    static SPARE: std::cell::Cell<Option<Box<State>>> = const {std::cell::Cell::new(None) };
}

impl ExecutionContext {
    /// A context for a step run on its own.
    #[cfg_attr(not(unix), allow(dead_code))] // only a Process executor's child runs one
    pub(crate) fn new(shared: Option<SharedMap>, step: Arc<str>, attempt: u32) -> Self {
        ExecutionContext {
            state: Box::new(State {
                shared: shared.map_or_else(OnceLock::new, OnceLock::from),
                goto: None,
                step: StepRef::Alone(step),
                attempt,
            }),
        }
    }

    /// A context for the steps of a run, placed on each with [`place`](Self::place).
    pub(crate) fn in_run(names: Arc<crate::pipeline::Inner>) -> Self {
        let step = StepRef::InRun {
            names,
            node: 0,
            member: 0,
        };
        // (`try_with`: a run may end while the thread's locals are being torn down.)
        let state = match SPARE.try_with(std::cell::Cell::take).ok().flatten() {
            // The rest was emptied by `recycle`.
            Some(mut spare) => {
                spare.step = step;
                spare
            }
            None => Box::new(State {
                shared: OnceLock::new(),
                goto: None,
                step,
                attempt: 0,
            }),
        };
        ExecutionContext { state }
    }

    /// Ends the context's run: what it holds is dropped now, and its allocation is kept
    /// for the next run on this thread. The pipeline it referred to is handed back.
    pub(crate) fn recycle(self) -> Option<Arc<crate::pipeline::Inner>> {
        let mut state = self.state;
        let step = std::mem::replace(&mut state.step, StepRef::Idle);
        state.shared = OnceLock::new();
        state.goto = None;
        state.attempt = 0;
        let _ = SPARE.try_with(|spare| spare.set(Some(state)));
        match step {
            StepRef::InRun { names, .. } => Some(names),
            _ => None,
        }
    }

    /// Points the context at a step and attempt of its run, with the run's shared values.
    #[inline]
    pub(crate) fn place(&mut self, at: (u32, u32), attempt: u32, shared: Option<&SharedMap>) {
        let state = &mut *self.state;
        if let StepRef::InRun { node, member, .. } = &mut state.step {
            (*node, *member) = at;
        }
        state.attempt = attempt;
        state.goto = None;
        if let Some(s) = shared
            && state.shared.get().is_none()
        {
            let _ = state.shared.set(s.clone());
        }
    }

    /// The `goto` the step asked for, if it did.
    pub(crate) fn take_goto(&mut self) -> Option<Box<GotoRequest>> {
        self.state.goto.take()
    }

    /// The values steps stored, if any did.
    #[inline]
    pub(crate) fn shared_map(&self) -> Option<&SharedMap> {
        self.state.shared.get()
    }

    /// Stores a value for later steps (and their `can_bypass`). Values stay with the run
    /// whatever the step then returns; the one exception is an attempt that panics or
    /// times out before the run's first value was stored, whose values are lost with it.
    pub fn set<T: Any + Send + Sync>(&self, key: impl Into<String>, value: T) {
        self.state
            .shared
            .get_or_init(SharedMap::default)
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.into(), Arc::new(value));
    }

    /// A value an earlier step stored, if it is a `T`.
    pub fn get<T: Any + Send + Sync + Clone>(&self, key: &str) -> Option<T> {
        self.state
            .shared
            .get()?
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(|v| v.downcast_ref::<T>().cloned())
    }

    /// The step being run.
    pub fn step(&self) -> &str {
        match &self.state.step {
            StepRef::InRun {
                names,
                node,
                member,
            } => names.member_name(*node, *member),
            StepRef::Alone(name) => name,
            StepRef::Idle => "",
        }
    }

    /// The attempt, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.state.attempt
    }

    /// Ends the step and moves execution to its branch `descriptor` (0 is the failure
    /// branch, 1 the success branch, other numbers are goto targets), passing `result`
    /// on. Return what it returns: `return ctx.goto(3, true, order, "premium customer");`.
    /// The reason defaults to `manual` when empty.
    ///
    /// `success` says how the step ended, as volnux's `result_status` does. With `false`,
    /// the step counts as failed: the trace records it as failed (`goto N: reason`),
    /// `stop_on_error` stops the run there (the branch does not run), and otherwise the
    /// branch runs and the run then ends [`Failed`](crate::pipeline::RunStatus::Failed)
    /// naming this step.
    pub fn goto<T, O>(
        &mut self,
        descriptor: u32,
        success: bool,
        result: T,
        reason: impl Into<String>,
    ) -> Outcome<O>
    where
        T: Any + Send + Sync,
    {
        let reason = reason.into();
        self.state.goto = Some(Box::new(GotoRequest {
            descriptor,
            success,
            result: Datum::new(result),
            reason: if reason.is_empty() {
                "manual".into()
            } else {
                reason
            },
        }));
        Ok(Done::Goto)
    }
}

impl std::fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionContext").finish_non_exhaustive()
    }
}
