//! The Process executor needs Unix sockets; on other systems a step on it fails each
//! attempt with an error saying so.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::step::{Attempt, Codec};
use crate::error::HandlerError;
use crate::executor::ExecutorConfig;

type Datum = Arc<dyn std::any::Any + Send + Sync>;

/// The name of the test that serves steps in a test binary.
pub const WORKER_TEST: &str = "eventflow_process_worker";

/// Does nothing on this system: the Process executor is for Unix.
pub fn serve_process_steps() {}

pub(crate) fn encode<T: Serialize + 'static>(d: &Datum) -> Result<Vec<u8>, String> {
    let v = d
        .downcast_ref::<T>()
        .ok_or_else(|| format!("not a `{}`", std::any::type_name::<T>()))?;
    serde_json::to_vec(v).map_err(|e| e.to_string())
}

pub(crate) fn decode<T: DeserializeOwned + Send + Sync + 'static>(
    b: &[u8],
) -> Result<Datum, String> {
    serde_json::from_slice::<T>(b)
        .map(|v| Arc::new(v) as Datum)
        .map_err(|e| e.to_string())
}

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
        _data: Datum,
        _timeout: Option<Duration>,
    ) -> Attempt {
        Attempt::Exception(HandlerError::permanent_msg(format!(
            "step `{step}`: the Process executor needs a Unix system"
        )))
    }
}
