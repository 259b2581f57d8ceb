//! The Process executor: pipeline steps in child processes of this same program.
//!
//! A step on `executor = Process` runs in a child process started from this program's own
//! executable. The child finds the step by its registered name (no code is shipped); the
//! input and output cross as JSON over a Unix socket, so both must be `Serialize` and
//! `Deserialize` (a compile error otherwise). Children are reused for up to
//! `max_tasks_per_child` tasks (unset: for as long as the pipeline lives), at most
//! `max_workers` at once (unset: the number of CPUs). A child that panics in the step,
//! aborts, is killed, or passes the step's `timeout` fails that attempt only (retried per
//! the step's policy) and is replaced.
//!
//! The child must be able to become a worker: make this the first line of `main`:
//!
//! ```ignore
//! fn main() {
//!     eventflow::pipeline::serve_process_steps();
//!     // ... the program as usual
//! }
//! ```
//!
//! In a test binary (whose `main` the test harness writes), add this test once instead:
//!
//! ```ignore
//! #[test]
//! fn eventflow_process_worker() {
//!     eventflow::pipeline::serve_process_steps();
//! }
//! ```
//!
//! Children are started with the arguments `eventflow_process_worker --exact --nocapture`
//! … so that a test binary runs only that test, and with the environment variable
//! `EVENTFLOW_STEP_SOCKET`; `serve_process_steps` does nothing when that variable is not
//! set, so the line costs nothing in the parent. In the child it serves steps until the
//! parent goes away, then exits the process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::step::{Attempt, Codec, ExecutionContext, StepDef};
use crate::error::HandlerError;
use crate::executor::ExecutorConfig;

const SOCKET_VAR: &str = "EVENTFLOW_STEP_SOCKET";
/// The name of the test that serves steps in a test binary.
pub const WORKER_TEST: &str = "eventflow_process_worker";

use super::datum::Datum;

/// Turns this process into a step worker if it was started as one; returns at once
/// otherwise. See the [module documentation](self).
pub fn serve_process_steps() {
    let Some(path) = std::env::var_os(SOCKET_VAR) else {
        return;
    };
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => match rt.block_on(serve(PathBuf::from(path))) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("eventflow step worker: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("eventflow step worker: cannot start a runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}

async fn write_frame(s: &mut UnixStream, kind: u8, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    buf.push(kind);
    for p in parts {
        buf.extend_from_slice(&(p.len() as u32).to_be_bytes());
        buf.extend_from_slice(p);
    }
    s.write_all(&buf).await
}

async fn read_part(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

const SUCCESS: u8 = 0;
const FAILURE: u8 = 1;
const EXCEPTION: u8 = 2;

/// The child's loop: one request at a time, until the parent closes the socket.
async fn serve(path: PathBuf) -> std::io::Result<()> {
    let mut s = UnixStream::connect(&path).await?;
    let mut steps: HashMap<String, StepDef> = HashMap::new();
    loop {
        let mut kind = [0u8; 1];
        match s.read_exact(&mut kind).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let name = String::from_utf8_lossy(&read_part(&mut s).await?).into_owned();
        let input = read_part(&mut s).await?;
        let (kind, payload) = match run_here(&mut steps, &name, &input).await {
            Ok(Attempt::Success(out)) => match steps.get(&name).and_then(|st| st.codec) {
                Some(codec) => match (codec.encode_output)(&out) {
                    Ok(b) => (SUCCESS, b),
                    Err(e) => (
                        EXCEPTION,
                        format!("cannot encode the output: {e}").into_bytes(),
                    ),
                },
                None => (EXCEPTION, b"the step has no codec".to_vec()),
            },
            Ok(Attempt::Failure(m)) => (FAILURE, m.into_bytes()),
            Ok(Attempt::Exception(e)) => (EXCEPTION, e.to_string().into_bytes()),
            Ok(Attempt::Goto(_)) => (
                EXCEPTION,
                b"goto is not available to steps on the Process executor".to_vec(),
            ),
            Err(e) => (EXCEPTION, e.into_bytes()),
        };
        write_frame(&mut s, kind, &[&payload]).await?;
    }
}

async fn run_here(
    steps: &mut HashMap<String, StepDef>,
    name: &str,
    input: &[u8],
) -> Result<Attempt, String> {
    if !steps.contains_key(name) {
        let record = super::registered(name)
            .ok_or_else(|| format!("no step `{name}` is registered in the worker"))?;
        steps.insert(name.to_owned(), (record.make)());
    }
    let step = steps.get(name).ok_or_else(|| format!("no step `{name}`"))?;
    let codec = step
        .codec
        .ok_or_else(|| format!("step `{name}` cannot cross processes (no serde codec)"))?;
    let mut data = (codec.decode_input)(input)?;
    let ctx = ExecutionContext::new(None, step.name.clone(), 1);
    let fut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        step.start(super::datum::Input::Given(&mut data), ctx)
    }))
    .map_err(|p| format!("the step panicked: {}", crate::executor::panic_message(&*p)))?;
    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await {
        Ok(Some((a, _ctx))) => Ok(a),
        Ok(None) => Err(format!("step `{name}`: its future is gone")),
        Err(p) => Err(format!(
            "the step panicked: {}",
            crate::executor::panic_message(&*p)
        )),
    }
}

struct Child {
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
}

impl ProcessPool {
    pub(crate) fn new(config: ExecutorConfig) -> Self {
        ProcessPool {
            slots: Semaphore::new(config.workers()),
            config,
            idle: Mutex::new(Vec::new()),
            spawned: Default::default(),
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
        let reused = crate::util::lock(&self.idle).pop();
        let mut child = match reused {
            Some(c) => c,
            None => match self.spawn().await {
                Ok(c) => c,
                Err(e) => {
                    return Attempt::Exception(HandlerError::msg(format!("step `{step}`: {e}")));
                }
            },
        };
        let exchange = async {
            write_frame(&mut child.socket, 0, &[step.as_bytes(), &input]).await?;
            let mut kind = [0u8; 1];
            child.socket.read_exact(&mut kind).await?;
            let payload = read_part(&mut child.socket).await?;
            Ok::<_, std::io::Error>((kind[0], payload))
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
