//! The Process executor: pipeline steps (and bus handlers) in child processes of this same
//! program.
//!
//! A step on `executor = Process` (or a handler: `#[event_handler(.., executor = Process)]`) runs in a child process started from this program's own
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
//!
//! `executor_config(max_memory = "256MiB", max_cpu_time = "10s")` bounds each child (see
//! [`limits`](crate::executor::limits)): a child they stop fails its attempt with an error
//! that names the limit, and the next attempt runs in a fresh child.
//!
//! Each request carries an id that its answer repeats, so an answer can never be taken
//! for another's; an idle child that has died (killed from outside) is replaced before it
//! is handed a task.

mod child;
mod pool;

pub use child::serve_process_steps;
pub(crate) use pool::ProcessPool;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub(crate) const SOCKET_VAR: &str = "EVENTFLOW_STEP_SOCKET";

/// Work a child serves besides pipeline steps, found by a prefix of the request's target:
/// the bus registers its handlers under `handler:` (so this module needs no import of
/// the bus above it).
pub(crate) struct ChildWork {
    pub(crate) prefix: &'static str,
    pub(crate) serve: ServeFn,
}

/// Serves one request: (the name after the prefix, the input) to (answer kind, payload).
pub(crate) type ServeFn = fn(String, Vec<u8>) -> crate::util::BoxFuture<'static, (u8, Vec<u8>)>;

inventory::collect!(ChildWork);
/// The name of the test that serves steps in a test binary.
pub const WORKER_TEST: &str = "eventflow_process_worker";

pub(crate) async fn write_frame(
    s: &mut UnixStream,
    kind: u8,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1 + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    buf.push(kind);
    for p in parts {
        let len = u32::try_from(p.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a frame part over 4 GiB")
        })?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(p);
    }
    s.write_all(&buf).await
}

pub(crate) async fn read_part(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_PART_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame part of {len} bytes, over the limit of {MAX_PART_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// The largest part of a frame read (an input or an output): 256 MiB.
const MAX_PART_BYTES: usize = 256 << 20;

pub(crate) const SUCCESS: u8 = 0;
pub(crate) const FAILURE: u8 = 1;
pub(crate) const EXCEPTION: u8 = 2;
