//! Steps with their types erased, as the run, the slot and the process pool see them: one
//! attempt's result, the function that starts an attempt, the inline room for its future,
//! and the codec that carries values across processes.

use std::sync::Arc;

use super::*;
use crate::pipeline::datum::{Datum, Input};
use crate::pipeline::slot::{Filled, Slot, Vacant};

/// One attempt's result, type-erased.
pub(crate) enum Attempt {
    Success(Datum),
    Failure(String),
    Exception(StepError),
    Goto(Box<GotoRequest>),
}

/// Takes the step's input out of the datum (a clone, or the value itself when given) and
/// makes the step's future in the slot it is given; the future gives the context back, with
/// what the step stored in it.
pub(crate) type RunFn = dyn for<'a, 'b> Fn(Input<'b>, ExecutionContext, Vacant<'a, StepFuture>) -> Filled<'a>
    + Send
    + Sync;

/// A [`RunFn`] from a closure (which gets its signature from the bound).
pub(crate) fn run_fn<F>(f: F) -> Arc<RunFn>
where
    F: for<'a, 'b> Fn(Input<'b>, ExecutionContext, Vacant<'a, StepFuture>) -> Filled<'a>
        + Send
        + Sync
        + 'static,
{
    Arc::new(f)
}

/// Bytes a step's future may take and still be held by the run itself rather than on the
/// heap (larger ones are boxed).
pub(crate) const STEP_FUTURE_INLINE: usize = 256;

/// A step's future, held in the run's own state when it fits (no allocation per step).
pub(crate) type StepFuture =
    stackfuture::StackFuture<'static, (Attempt, ExecutionContext), STEP_FUTURE_INLINE>;

/// A step that is over before it began (its input was not what it takes).
pub(crate) fn ready(attempt: Attempt, ctx: ExecutionContext) -> StepFuture {
    StepFuture::from(std::future::ready((attempt, ctx)))
}
/// A step's `can_bypass`, erased: given the context and the step's input, the data to pass
/// on in its place and why, or `None` to run it.
pub(crate) type BypassFn =
    dyn Fn(&ExecutionContext, &Datum) -> Option<(Datum, String)> + Send + Sync;

/// How a step's input and output cross processes (the Process executor).
#[derive(Clone, Copy)]
pub(crate) struct Codec {
    pub(crate) encode_input: EncodeFn,
    pub(crate) decode_input: DecodeFn,
    pub(crate) encode_output: EncodeFn,
    pub(crate) decode_output: DecodeFn,
}

pub(crate) type EncodeFn = fn(&Datum) -> Result<Vec<u8>, String>;

pub(crate) fn encode<T: serde::Serialize + 'static>(d: &Datum) -> Result<Vec<u8>, String> {
    let v = d
        .downcast_ref::<T>()
        .ok_or_else(|| format!("not a `{}`", std::any::type_name::<T>()))?;
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: serde::de::DeserializeOwned + Send + Sync + 'static>(
    b: &[u8],
) -> Result<Datum, String> {
    serde_json::from_slice::<T>(b)
        .map(Datum::new)
        .map_err(|e| format!("not a `{}`: {e}", std::any::type_name::<T>()))
}
pub(crate) type DecodeFn = fn(&[u8]) -> Result<Datum, String>;

/// The run's pinned place for one step future.
pub(crate) type StepSlot = Slot<StepFuture>;
