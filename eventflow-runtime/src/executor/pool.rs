//! A pool of OS threads for blocking work.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::oneshot;

use super::ExecutorConfig;
use super::drive::{Panicked, panic_message};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct PoolState {
    queue: VecDeque<Job>,
    live: usize,
    idle: usize,
    closed: bool,
}

struct PoolShared {
    config: ExecutorConfig,
    workers: usize,
    state: Mutex<PoolState>,
    ready: Condvar,
    started: AtomicUsize,
}

/// A pool of OS threads for blocking work, configured by an [`ExecutorConfig`].
///
/// Threads start on demand up to `max_workers`. A panic in a task is caught and returned
/// to the submitter; the thread goes on. The pool stops its threads once every handle to it
/// is dropped and its queue is empty.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use eventflow_runtime::{ExecutorConfig, ThreadPool};
/// let pool = ThreadPool::new(ExecutorConfig::new().max_workers(2).thread_name_prefix("report-"));
/// let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
/// assert_eq!(name.as_deref(), Some("report-0"));
/// # }
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    shared: Arc<PoolShared>,
    _owner: Arc<PoolOwner>,
}

struct PoolOwner(Arc<PoolShared>);

impl Drop for PoolOwner {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.state.lock() {
            st.closed = true;
        }
        self.0.ready.notify_all();
    }
}

/// A task that panicked; holds the panic message.
impl ThreadPool {
    /// A pool with the given settings; no thread starts until work arrives.
    pub fn new(config: ExecutorConfig) -> Self {
        let shared = Arc::new(PoolShared {
            workers: config.workers(),
            config,
            state: Mutex::new(PoolState {
                queue: VecDeque::new(),
                live: 0,
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            started: AtomicUsize::new(0),
        });
        ThreadPool {
            _owner: Arc::new(PoolOwner(shared.clone())),
            shared,
        }
    }

    /// The settings the pool was made with.
    pub fn config(&self) -> &ExecutorConfig {
        &self.shared.config
    }

    /// Threads running a task now.
    pub fn busy(&self) -> usize {
        self.shared
            .state
            .lock()
            .map_or(0, |st| st.live.saturating_sub(st.idle))
    }

    /// Tasks waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.state.lock().map_or(0, |st| st.queue.len())
    }

    /// The most threads it runs at once.
    pub fn max_threads(&self) -> usize {
        self.shared.workers
    }

    /// How many threads the pool has started so far (replacements included).
    pub fn threads_started(&self) -> usize {
        self.shared.started.load(Ordering::Relaxed)
    }

    /// Runs `f` on a pool thread and waits for its result without blocking the caller's
    /// thread. A panic in `f` comes back as `Err(Panicked)`.
    pub async fn run<R, F>(&self, f: F) -> Result<R, Panicked>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f)).map_err(|p| Panicked(panic_message(&*p)));
            let _ = tx.send(out);
        }));
        rx.await.unwrap_or_else(|_| {
            Err(Panicked(
                "the pool thread stopped before finishing the task".into(),
            ))
        })
    }

    fn submit(&self, job: Job) {
        let spawn = {
            let Ok(mut st) = self.shared.state.lock() else {
                return;
            };
            st.queue.push_back(job);
            let spawn = st.idle == 0 && st.live < self.shared.workers;
            if spawn {
                st.live += 1;
            }
            spawn
        };
        if spawn {
            spawn_worker(self.shared.clone());
        } else {
            self.shared.ready.notify_one();
        }
    }
}

fn spawn_worker(shared: Arc<PoolShared>) {
    let n = shared.started.fetch_add(1, Ordering::Relaxed);
    let mut builder = std::thread::Builder::new();
    if let Some(prefix) = &shared.config.thread_name_prefix {
        builder = builder.name(format!("{prefix}{n}"));
    }
    let worker_shared = shared.clone();
    if let Err(err) = builder.spawn(move || worker_loop(worker_shared)) {
        tracing::error!(%err, "eventflow: could not start a pool thread");
        if let Ok(mut st) = shared.state.lock() {
            st.live -= 1;
        }
    }
}

fn worker_loop(shared: Arc<PoolShared>) {
    let mut done = 0usize;
    loop {
        let job = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            loop {
                if let Some(job) = st.queue.pop_front() {
                    break Some(job);
                }
                if st.closed {
                    break None;
                }
                st.idle += 1;
                st = match shared.ready.wait(st) {
                    Ok(st) => st,
                    Err(_) => return,
                };
                st.idle -= 1;
            }
        };
        let Some(job) = job else { break };
        job();
        done += 1;
        if shared
            .config
            .max_tasks_per_child
            .is_some_and(|max| done >= max)
        {
            // Retire; start a replacement if work is waiting (otherwise one starts on demand).
            // Decided under one lock, so a task submitted meanwhile is never stranded.
            let replace = match shared.state.lock() {
                Ok(mut st) => {
                    let replace = !st.queue.is_empty() && !st.closed;
                    if !replace {
                        st.live -= 1;
                    }
                    replace
                }
                Err(_) => false,
            };
            if replace {
                spawn_worker(shared.clone());
            }
            return;
        }
    }
    if let Ok(mut st) = shared.state.lock() {
        st.live -= 1;
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn names_threads_and_replaces_them_after_max_tasks() {
        let pool = ThreadPool::new(
            ExecutorConfig::new()
                .max_workers(1)
                .max_tasks_per_child(2)
                .thread_name_prefix("w-"),
        );
        let mut names = Vec::new();
        for _ in 0..6 {
            names.push(
                pool.run(|| std::thread::current().name().map(str::to_owned))
                    .await
                    .unwrap(),
            );
        }
        let names: Vec<String> = names.into_iter().flatten().collect();
        assert_eq!(names, ["w-0", "w-0", "w-1", "w-1", "w-2", "w-2"]);
        assert_eq!(pool.threads_started(), 3);
    }

    #[tokio::test]
    async fn bounded_by_max_workers_and_survives_panics() {
        let pool = ThreadPool::new(ExecutorConfig {
            max_workers: Some(3),
            ..ExecutorConfig::new()
        });
        let bad = pool.run(|| -> u32 { panic!("boom") }).await;
        assert_eq!(bad.unwrap_err().0, "boom");
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.run(|| {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        std::thread::current().id()
                    })
                    .await
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap().unwrap());
        }
        assert!(ids.len() <= 3, "{} threads used", ids.len());
        assert!(pool.threads_started() <= 3);
    }

    #[test]
    fn unset_values_default_as_documented() {
        let c = ExecutorConfig::new();
        assert_eq!(
            c.workers(),
            std::thread::available_parallelism().unwrap().get()
        );
        assert!(c.max_tasks_per_child.is_none() && c.thread_name_prefix.is_none());
    }
}
