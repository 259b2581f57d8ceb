//! Executors: where a handler's (or a pipeline step's) work runs.
//!
//! | executor | runs the work | use it for |
//! | --- | --- | --- |
//! | [`Inline`](Executor::Inline) (default) | on the task delivering the event, one handler after another | quick async handlers |
//! | [`Tokio`](Executor::Tokio) | in a task of its own on the tokio runtime, concurrently with the other handlers | slow async handlers (I/O) |
//! | [`ThreadPool`](Executor::ThreadPool) | on a dedicated pool of OS threads | blocking or CPU-heavy code |
//! | [`Process`](Executor::Process) | in child processes of this program (pipeline steps and handlers), bounded by `max_memory` and `max_cpu_time` ([`limits`]) | code that may crash, leak or hold the GIL of a C library |
//! | [`Custom`](Executor::Custom) | on an executor of yours ([`Spawn`], set with [`ExecutorConfig::custom`] or `executor = custom(path)`) | a rayon pool, a pinned thread |
//!
//! A plain (non-`async`) handler never runs on the async workers: with `Inline` it runs on
//! tokio's blocking pool, with `ThreadPool` on its own pool.
//!
//! [`ExecutorConfig`] sets the pool: `max_workers` (unset: the number of CPUs),
//! `max_tasks_per_child` (unset: threads live as long as the pool; set: a thread retires
//! after that many tasks and a fresh one replaces it) and `thread_name_prefix` (unset: no
//! prefix; set: threads are named `prefix0`, `prefix1`, ...).

use std::borrow::Cow;

/// Where work runs. See the [module documentation](self). In configuration: `"Inline"`,
/// `"Tokio"`, `"ThreadPool"` or `"Process"` (a custom executor is set in code).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum Executor {
    /// Sequentially, on the delivering task (volnux's DefaultExecutor, which runs a pipeline's events one after another).
    #[default]
    Inline,
    /// In a tokio task of its own.
    Tokio,
    /// On a dedicated pool of OS threads.
    ThreadPool,
    /// In child processes of this program (pipeline steps only); see
    /// [`pipeline::process`](crate::pipeline::process).
    Process,
    /// On an executor of yours: [`ExecutorConfig::custom`] holds it (an async handler's
    /// future is driven to its end on the executor's thread, as on `ThreadPool`).
    #[serde(skip)]
    Custom,
}

/// Settings of an executor's workers. Unset values take the defaults of the
/// [module documentation](self). Also read from configuration (volnux's `executor_config`
/// dict): `{ max_workers = 4, max_tasks_per_child = 100, thread_name_prefix = "pay-" }`,
/// and for the Process executor `max_memory = "256MiB"`, `max_cpu_time = "10s"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ExecutorConfig {
    /// The executor of [`Executor::Custom`] (set in code).
    #[serde(skip)]
    pub custom: Option<CustomExecutor>,
    /// Workers at most. Unset: the number of CPUs.
    pub max_workers: Option<usize>,
    /// Tasks a worker runs before it is replaced. Unset: unlimited.
    pub max_tasks_per_child: Option<usize>,
    /// Prefix of worker thread names. Unset: no prefix.
    pub thread_name_prefix: Option<Cow<'static, str>>,
    /// The most memory (address space, bytes) a child process of the Process executor
    /// may use: `"256MiB"` in configuration. Unset: no limit.
    #[serde(with = "limits::bytes_option")]
    pub max_memory: Option<u64>,
    /// The most CPU time a child process of the Process executor may use, over all its
    /// tasks (whole seconds): `"10s"` in configuration. Unset: no limit.
    #[serde(with = "crate::config::duration::option")]
    pub max_cpu_time: Option<std::time::Duration>,
}

impl ExecutorConfig {
    /// All defaults.
    pub const fn new() -> Self {
        ExecutorConfig {
            custom: None,
            max_workers: None,
            max_tasks_per_child: None,
            thread_name_prefix: None,
            max_memory: None,
            max_cpu_time: None,
        }
    }

    /// Each child process may use at most `bytes` of memory (Process executor).
    pub const fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Each child process may use at most `time` of CPU (Process executor); counted in
    /// whole seconds, at least one.
    pub const fn max_cpu_time(mut self, time: std::time::Duration) -> Self {
        self.max_cpu_time = Some(time);
        self
    }

    /// The limits of child processes.
    pub(crate) fn limits(&self) -> limits::Limits {
        limits::Limits {
            memory: self.max_memory,
            cpu: self.max_cpu_time,
        }
    }

    /// Runs the work on `executor` (with [`Executor::Custom`]).
    pub fn custom(mut self, executor: CustomExecutor) -> Self {
        self.custom = Some(executor);
        self
    }

    /// At most `n` workers.
    pub const fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = Some(n);
        self
    }

    /// Each worker is replaced after `n` tasks.
    pub const fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Worker threads are named `prefix0`, `prefix1`, ...
    pub fn thread_name_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// The number of workers after defaults.
    pub fn workers(&self) -> usize {
        self.max_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1)
    }
}

mod custom;
mod drive;
pub mod limits;
mod pool;
mod program;

pub(crate) use custom::WorkPool;
pub use custom::{CustomExecutor, Job, Spawn};
pub use drive::Panicked;
pub(crate) use drive::{AbortOnDrop, bounded, flatten_panic, panic_message};
pub use pool::ThreadPool;
pub(crate) use program::{ProgramFailure, run_program};
