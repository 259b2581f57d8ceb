//! The bridge from pipelines to the bus: a pipeline run as a bus handler. It sits above
//! the bus (L4) while the rest of `pipeline` sits below it, so that pipelines never need
//! the bus to run.

use super::{Pipeline, RunStatus};
use crate::bus::Handler;
use crate::error::HandlerError;

impl Pipeline {
    /// A bus handler that runs this pipeline on each event's payload decoded as `T`; a run
    /// that does not complete fails the delivery (and is retried per the handler's policy).
    pub fn handler<T>(&self, name: impl Into<String>, pattern: impl Into<String>) -> Handler
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let pipeline = self.clone();
        Handler::typed(name, pattern, move |input: T, _ctx| {
            let pipeline = pipeline.clone();
            async move {
                let run = pipeline.run(input).await;
                match run.status() {
                    RunStatus::Failed { step, message } => Err(HandlerError::msg(format!(
                        "pipeline `{}` failed at `{step}`: {message}",
                        pipeline.name()
                    ))),
                    _ => Ok(()),
                }
            }
        })
    }
}
