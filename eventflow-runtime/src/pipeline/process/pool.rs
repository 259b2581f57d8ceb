//! The parent side: a pool of reused children, each attempt a frame over its socket.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::*;
use crate::error::HandlerError;
use crate::executor::ExecutorConfig;
use crate::pipeline::datum::Datum;
use crate::pipeline::step::{Attempt, Codec};

pub(crate) struct Child {
    process: tokio::process::Child,
    socket: UnixStream,
    tasks: usize,
}

/// The children of one step.
pub(crate) struct ProcessPool {
    config: ExecutorConfig,
    idle: Mutex<Vec<Child>>,
    slots: Semaphore,
    spawned: std::sync::atomic::AtomicUsize,
    /// The id of the next request; a child answers each with its id.
    next_request: std::sync::atomic::AtomicU64,
}

fn out_of_step(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the child is out of step: {what}"),
    )
}

impl ProcessPool {
    pub(crate) fn new(config: ExecutorConfig) -> Self {
        ProcessPool {
            slots: Semaphore::new(config.workers()),
            config,
            idle: Mutex::new(Vec::new()),
            spawned: Default::default(),
            next_request: Default::default(),
        }
    }

    /// Children started so far (replacements included).
    pub(crate) fn spawned(&self) -> usize {
        self.spawned.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn spawn(&self) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let path = std::env::temp_dir().join(format!(
            "eventflow-step-{}-{}.sock",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let process = tokio::process::Command::new(exe)
            .args([
                WORKER_TEST,
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(SOCKET_VAR, &path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let accepted = match process {
            Ok(mut process) => {
                let accept = tokio::time::timeout(Duration::from_secs(30), listener.accept());
                tokio::select! {
                    r = accept => match r {
                        Ok(Ok((socket, _))) => Ok(Child {process, socket, tasks: 0 }),
                        Ok(Err(e)) => Err(format!("the child did not connect: {e}")),
                        Err(_) => Err("the child did not connect within 30s: does `main` begin with \
                                       `eventflow::pipeline::serve_process_steps()` (or, in tests, \
                                       is there an `eventflow_process_worker` test calling it)?".to_owned()),
                    },
                    status = process.wait() => Err(format!(
                        "the child exited before connecting ({}): does `main` begin with \
                         `eventflow::pipeline::serve_process_steps()`?",
                        status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
                    )),
                }
            }
            Err(e) => Err(format!("cannot start a child process: {e}")),
        };
        let _ = std::fs::remove_file(&path);
        if accepted.is_ok() {
            self.spawned
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        accepted
    }

    /// An idle child that is still alive: one that died while idle (killed from outside)
    /// is dropped here rather than handed a task it would never run.
    fn live_idle_child(&self) -> Option<Child> {
        let mut idle = crate::util::lock(&self.idle);
        while let Some(mut c) = idle.pop() {
            match c.process.try_wait() {
                Ok(None) => return Some(c),
                Ok(Some(status)) => {
                    tracing::warn!(%status, "eventflow: an idle step process had ended; replacing it");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "eventflow: cannot tell whether an idle step process lives; replacing it")
                }
            }
        }
        None
    }

    /// One attempt in a child: an idle one, or a new one while under `max_workers`.
    pub(crate) async fn run(
        &self,
        step: &str,
        codec: Codec,
        data: &Datum,
        timeout: Option<Duration>,
    ) -> Attempt {
        let input = match (codec.encode_input)(data) {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Exception(HandlerError::permanent_msg(format!(
                    "step `{step}`: cannot encode the input: {e}"
                )));
            }
        };
        let Ok(_slot) = self.slots.acquire().await else {
            return Attempt::Exception(HandlerError::msg("the process pool is closed"));
        };
        let reused = self.live_idle_child();
        let mut child = match reused {
            Some(c) => c,
            None => match self.spawn().await {
                Ok(c) => c,
                Err(e) => {
                    return Attempt::Exception(HandlerError::msg(format!("step `{step}`: {e}")));
                }
            },
        };
        let id = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exchange = async {
            write_frame(
                &mut child.socket,
                0,
                &[&id.to_be_bytes(), step.as_bytes(), &input],
            )
            .await?;
            loop {
                let mut kind = [0u8; 1];
                child.socket.read_exact(&mut kind).await?;
                let answered = read_part(&mut child.socket).await?;
                let payload = read_part(&mut child.socket).await?;
                let answered = <[u8; 8]>::try_from(answered.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| out_of_step("an answer without a request id"))?;
                match answered.cmp(&id) {
                    std::cmp::Ordering::Equal => break Ok::<_, std::io::Error>((kind[0], payload)),
                    // A stray answer to an earlier request: skipped, so that it cannot
                    // pass for this one's.
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Greater => {
                        break Err(out_of_step("an answer to a request not yet made"));
                    }
                }
            }
        };
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, exchange).await.unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out",
                ))
            }),
            None => exchange.await,
        };
        let attempt = match result {
            Ok((SUCCESS, payload)) => match (codec.decode_output)(&payload) {
                Ok(v) => Attempt::Success(v),
                Err(e) => Attempt::Exception(HandlerError::permanent_msg(format!(
                    "step `{step}`: cannot decode the output: {e}"
                ))),
            },
            Ok((FAILURE, payload)) => {
                Attempt::Failure(String::from_utf8_lossy(&payload).into_owned())
            }
            Ok((_, payload)) => Attempt::Exception(HandlerError::msg(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            Err(e) => {
                // The child is gone, stuck or out of step: it is not reused.
                let _ = child.process.start_kill();
                let status = child.process.try_wait().ok().flatten();
                let why = match (e.kind(), status) {
                    (std::io::ErrorKind::TimedOut, _) => match timeout {
                        Some(t) => return Attempt::Exception(HandlerError::timed_out(t)),
                        None => "timed out".to_owned(),
                    },
                    (_, Some(s)) => format!("the child process ended ({s})"),
                    _ => format!("the child process went away: {e}"),
                };
                return Attempt::Exception(HandlerError::msg(format!("step `{step}`: {why}")));
            }
        };
        child.tasks += 1;
        let retire = self
            .config
            .max_tasks_per_child
            .is_some_and(|m| child.tasks >= m);
        if !retire {
            crate::util::lock(&self.idle).push(child);
        }
        attempt
    }
}
