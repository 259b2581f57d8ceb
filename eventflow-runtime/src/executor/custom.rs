//! Executors of the user's own: a rayon pool, a pinned thread, any pool that runs closures
//! (volnux accepts any `concurrent.futures` executor).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{ExecutorConfig, Panicked, ThreadPool, panic_message};

/// One piece of work for a [`Spawn`] executor: an attempt of a handler or a pipeline step.
/// Run it with [`run`](Self::run) on one of the executor's threads; it returns when the
/// attempt is over (an async handler's future is driven to its end on that thread).
pub struct Job(Box<dyn FnOnce() + Send + 'static>);

impl Job {
    /// Runs the work on the calling thread. A panic in it is caught and fails the
    /// attempt; it does not unwind into the executor.
    pub fn run(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

/// An executor of your own for handlers and pipeline steps: it is given each attempt as a
/// [`Job`] and runs it on a thread of its choosing.
///
/// A job it drops without running fails its attempt ("the executor dropped the job"),
/// which is retried per the retry policy. A job must not be run on a thread of the tokio
/// runtime's async workers (it blocks until the attempt ends).
///
/// ```
/// use eventflow_runtime::executor::{CustomExecutor, Job, Spawn};
///
/// /// Each job on a thread of its own.
/// struct ThreadPerJob;
///
/// impl Spawn for ThreadPerJob {
///     fn spawn(&self, job: Job) {
///         std::thread::spawn(move || job.run());
///     }
/// }
///
/// let executor = CustomExecutor::new(ThreadPerJob);
/// # let _ = executor;
/// ```
pub trait Spawn: Send + Sync + 'static {
    /// Runs `job`, now or later, on a thread that is not one of tokio's async workers.
    fn spawn(&self, job: Job);
}

/// A [`Spawn`] executor, as handler and step options hold it (`Executor::Custom` with
/// this in [`ExecutorConfig::custom`]); cheap to clone, compared by identity.
#[derive(Clone)]
pub struct CustomExecutor(Arc<dyn Spawn>);

impl CustomExecutor {
    /// Wraps an executor.
    pub fn new(executor: impl Spawn) -> Self {
        CustomExecutor(Arc::new(executor))
    }
}

impl PartialEq for CustomExecutor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CustomExecutor {}

impl std::fmt::Debug for CustomExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomExecutor").finish_non_exhaustive()
    }
}

/// Where blocking work of a handler or step runs: a pool of the bus's or the step's own,
/// or the user's executor.
#[derive(Clone, Debug)]
pub(crate) enum WorkPool {
    Threads(ThreadPool),
    Custom(CustomExecutor),
}

impl WorkPool {
    /// The pool for work on `executor` with `config`: a custom executor, a thread pool of
    /// its own, or none (the caller's default).
    pub(crate) fn for_executor(executor: super::Executor, config: &ExecutorConfig) -> Option<Self> {
        match executor {
            super::Executor::ThreadPool => Some(WorkPool::Threads(ThreadPool::new(config.clone()))),
            super::Executor::Custom => config.custom.clone().map(WorkPool::Custom),
            _ => None,
        }
    }

    /// Runs `f` on the pool and waits for its result without blocking the caller's thread.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, Panicked>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self {
            WorkPool::Threads(pool) => pool.run(f).await,
            WorkPool::Custom(CustomExecutor(spawn)) => {
                let (tx, rx) = oneshot::channel();
                spawn.spawn(Job(Box::new(move || {
                    let out =
                        catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(&*p)));
                    let _ = tx.send(out);
                })));
                rx.await.unwrap_or_else(|_| {
                    Err(Panicked(
                        "the executor dropped the job without running it".into(),
                    ))
                })
            }
        }
    }
}
