//! The Process executor needs Unix sockets; on other systems a step on it fails each
//! attempt with an error saying so.

use std::time::Duration;

use super::step::{Attempt, Codec};
use crate::error::HandlerError;
use crate::executor::ExecutorConfig;

use super::datum::Datum;

/// The name of the test that serves steps in a test binary.
pub const WORKER_TEST: &str = "eventflow_process_worker";

/// Does nothing on this system: the Process executor is for Unix.
pub fn serve_process_steps() {}

pub(crate) struct ProcessPool;

impl ProcessPool {
    pub(crate) fn new(_config: ExecutorConfig) -> Self {
        ProcessPool
    }

    pub(crate) fn spawned(&self) -> usize {
        0
    }

    pub(crate) async fn run(
        &self,
        step: &str,
        _codec: Codec,
        _data: &Datum,
        _timeout: Option<Duration>,
    ) -> Attempt {
        Attempt::Exception(HandlerError::permanent_msg(format!(
            "step `{step}`: the Process executor needs a Unix system"
        )))
    }
}
