//! The Command executor's one attempt: an external program given the step's input as JSON
//! on its standard input, its standard output read back as the JSON of the output. The
//! program runs as [`executor::program`](crate::executor) runs every program: in a
//! process group of its own, killed whole on a timeout, its output read up to a bound
//! ([`DEFAULT_MAX_OUTPUT_BYTES`] unless the step sets another).

use super::datum::Datum;
use super::step::Attempt;
use crate::error::HandlerError;
use crate::executor::{ProgramFailure, run_program};

/// The most standard output a command step reads by default: 16 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 << 20;

/// One attempt of a command step.
pub(crate) async fn run_command<I, O>(
    step: &str,
    program: &str,
    args: &[String],
    input: &I,
    max_output: usize,
) -> Attempt
where
    I: serde::Serialize,
    O: serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let json = match serde_json::to_vec(input) {
        Ok(j) => j,
        Err(e) => return Attempt::Exception(HandlerError::permanent(e)),
    };
    let out = match run_program(&format!("step `{step}`"), program, args, json, max_output).await {
        Ok(out) => out,
        Err(ProgramFailure::Exited(message)) => return Attempt::Failure(message),
        Err(ProgramFailure::Error(e)) => return Attempt::Exception(e),
    };
    match serde_json::from_slice::<O>(&out) {
        Ok(v) => Attempt::Success(Datum::new(v)),
        Err(e) => Attempt::Exception(HandlerError::permanent_msg(format!(
            "step `{step}`: the output of `{program}` is not a `{}`: {e}",
            std::any::type_name::<O>()
        ))),
    }
}
