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
    /// The end of what the child wrote to standard error (passed on to this process's),
    /// to tell what stopped it; the task reading it ends when the child does.
    stderr: std::sync::Arc<Mutex<String>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

/// How much of a child's standard error is kept to explain its end.
const STDERR_TAIL: usize = 4096;

/// Passes a child's standard error on to this process's, keeping its end in `tail`.
async fn pass_stderr(mut from: tokio::process::ChildStderr, tail: std::sync::Arc<Mutex<String>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        eprint!("{text}");
        let mut t = crate::util::lock(&tail);
        t.push_str(&text);
        if t.len() > STDERR_TAIL {
            let mut cut = t.len() - STDERR_TAIL;
            while !t.is_char_boundary(cut) {
                cut += 1;
            }
            t.drain(..cut);
        }
    }
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
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args([
            WORKER_TEST,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(SOCKET_VAR, &path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        self.config.limits().apply(&mut cmd);
        let process = cmd.spawn();
        let accepted = match process {
            Ok(mut process) => {
                let stderr = std::sync::Arc::new(Mutex::new(String::new()));
                let stderr_task = process
                    .stderr
                    .take()
                    .map(|e| tokio::spawn(pass_stderr(e, stderr.clone())));
                let accept = tokio::time::timeout(Duration::from_secs(30), listener.accept());
                tokio::select! {
                    r = accept => match r {
                        Ok(Ok((socket, _))) => Ok(Child {process, socket, tasks: 0, stderr, stderr_task }),
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

    /// One attempt of a step in a child.
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
        match self
            .exchange(&format!("step `{step}`"), step, &input, timeout)
            .await
        {
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
            Err(e) => Attempt::Exception(e),
        }
    }

    /// One request to a child (an idle one, or a new one while under `max_workers`):
    /// `target` names what the child runs, `input` is its input; the answer's kind and
    /// payload. A child that ends, hangs past `timeout` or falls out of step fails the
    /// request (naming the resource limit that stopped it, if one did) and is not reused.
    pub(crate) async fn exchange(
        &self,
        what: &str,
        target: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(u8, Vec<u8>), HandlerError> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(HandlerError::msg("the process pool is closed"));
        };
        let reused = self.live_idle_child();
        let mut child = match reused {
            Some(c) => c,
            None => self
                .spawn()
                .await
                .map_err(|e| HandlerError::msg(format!("{what}: {e}")))?,
        };
        let id = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exchange = async {
            write_frame(
                &mut child.socket,
                0,
                &[&id.to_be_bytes(), target.as_bytes(), input],
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
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => return Err(self.child_lost(what, child, e, timeout).await),
        };
        child.tasks += 1;
        let retire = self
            .config
            .max_tasks_per_child
            .is_some_and(|m| child.tasks >= m);
        if !retire {
            crate::util::lock(&self.idle).push(child);
        }
        Ok(answer)
    }

    /// The error of a request whose child is gone, stuck or out of step; the child is
    /// killed and not reused.
    async fn child_lost(
        &self,
        what: &str,
        mut child: Child,
        e: std::io::Error,
        timeout: Option<Duration>,
    ) -> HandlerError {
        if e.kind() == std::io::ErrorKind::TimedOut {
            let _ = child.process.start_kill();
            return match timeout {
                Some(t) => HandlerError::timed_out(t),
                None => HandlerError::msg(format!("{what}: timed out")),
            };
        }
        // Its status and the rest of its standard error say what stopped it.
        let status = tokio::time::timeout(Duration::from_millis(500), child.process.wait())
            .await
            .ok()
            .and_then(Result::ok);
        if status.is_none() {
            let _ = child.process.start_kill();
        }
        if let Some(task) = child.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), task).await;
        }
        let stderr = crate::util::lock(&child.stderr).clone();
        if let Some(limit) = self.config.limits().diagnose(status, &stderr) {
            return HandlerError::msg(format!("{what}: {limit}"));
        }
        let why = match status {
            Some(s) => format!("the child process ended ({s})"),
            None => format!("the child process went away: {e}"),
        };
        HandlerError::msg(format!("{what}: {why}"))
    }
}
