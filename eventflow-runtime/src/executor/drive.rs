//! One attempt of a piece of work on an executor: bounded in time, with its panic caught
//! as a failure, and stopped when whoever awaits it goes away. The bus's handler attempts
//! and the pipelines' step attempts both go through these helpers, so a Tokio task is
//! always aborted when its attempt is dropped, and a panic always becomes
//! [`HandlerError::panicked`].

use std::future::Future;
use std::time::Duration;

use crate::error::HandlerError;

/// A task that panicked; holds the panic message.
#[derive(Debug, Clone)]
pub struct Panicked(pub String);

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Awaits `fut`, failing with a timeout error after `timeout` when one is set.
#[inline]
pub(crate) async fn bounded<F: Future>(
    timeout: Option<Duration>,
    fut: F,
) -> Result<F::Output, HandlerError> {
    match timeout {
        None => Ok(fut.await),
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| HandlerError::timed_out(t)),
    }
}

/// A caught panic becomes a failed attempt.
#[inline]
pub(crate) fn flatten_panic<T>(
    r: std::thread::Result<Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    r.unwrap_or_else(|p| Err(HandlerError::panicked(panic_message(&*p))))
}

/// A spawned task that is aborted when this handle is dropped, so an attempt that nobody
/// awaits any more stops running.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> AbortOnDrop<T> {
    /// Spawns `fut` on the current runtime.
    pub(crate) fn spawn<F>(fut: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        AbortOnDrop(tokio::spawn(fut))
    }

    /// Awaits the task: its output, or the failure of a task that panicked or was
    /// cancelled.
    pub(crate) async fn join(&mut self) -> Result<T, HandlerError> {
        match (&mut self.0).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => Err(HandlerError::panicked(panic_message(&*e.into_panic()))),
            Err(_) => Err(HandlerError::cancelled("the task was cancelled")),
        }
    }
}
