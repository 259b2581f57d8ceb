//! Running an external program for one attempt (command pipeline steps and command
//! handlers): its input on standard input, its standard output read back.
//!
//! The program runs in a process group of its own. A timeout, or an attempt given up on
//! (its future dropped), kills the whole group: the program's own children too. Reading
//! stops when the program has exited (a child of it that keeps the pipe open does not
//! hold the attempt), and its output is read up to a bound: past it the group is killed
//! and the attempt fails saying so.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::HandlerError;

/// The most standard error kept for a failure's message.
const MAX_STDERR_BYTES: usize = 64 << 10;

/// How long reading goes on after the program exited, for what it wrote last.
const AFTER_EXIT: Duration = Duration::from_millis(200);

/// Sends `SIGKILL` to the process group `pgid` (none: nothing to do). `unsafe` because
/// the standard library has no call to signal a process group, only `libc` does.
#[allow(unsafe_code)]
fn kill_group(pgid: Option<i32>) {
    if let Some(pgid) = pgid.filter(|p| *p > 0) {
        // SAFETY: `kill` takes two integers and touches no memory of this process. `pgid`
        // is positive, so `-pgid` names a process group, never "every process" (-1); it is
        // the group the program was started in (its own pid, as `process_group(0)`
        // makes it). A group that is already gone makes it fail with ESRCH, ignored.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Kills a process group when dropped: a run given up on (a timeout drops the attempt)
/// takes the program's own children with it.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Reads `r` into `buf` up to `max` bytes; `Ok(false)` when there is more than that.
async fn read_capped<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(true);
        }
        if buf.len().saturating_add(n) > max {
            let room = max.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..room]);
            return Ok(false);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads `r` to its end, keeping its first `max` bytes.
async fn drain_capped<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            return;
        }
        let room = max.saturating_sub(buf.len()).min(n);
        buf.extend_from_slice(&chunk[..room]);
    }
}

/// How a program's run failed.
#[derive(Debug)]
pub(crate) enum ProgramFailure {
    /// It ran and exited unsuccessfully: the status and its standard error.
    Exited(String),
    /// It could not run, or broke a bound.
    Error(HandlerError),
}

/// Runs `program` with `args`, writes `input` to its standard input and returns its
/// standard output. `what` names the attempt in messages (`step \`x\``).
pub(crate) async fn run_program(
    what: &str,
    program: &str,
    args: &[String],
    input: Vec<u8>,
    max_output: usize,
) -> Result<Vec<u8>, ProgramFailure> {
    let json = input;
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return Err(ProgramFailure::Error(HandlerError::msg(format!(
                "{what} cannot start `{program}`: {e}"
            ))));
        }
    };
    let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ProgramFailure::Error(HandlerError::msg(format!(
            "{what}: the pipes of `{program}` are missing"
        ))));
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (status, complete) = {
        let pgid = group.0;
        let feed = async move {
            // A program that exits without reading its input is its own business.
            let _ = stdin.write_all(&json).await;
        };
        let stdout_part = async {
            let r = read_capped(&mut stdout, &mut out, max_output).await;
            if matches!(r, Ok(false)) {
                // Too much: stop the program now, which ends the other pipe too.
                kill_group(pgid);
            }
            r
        };
        let stderr_part = drain_capped(&mut stderr, &mut err, MAX_STDERR_BYTES);
        let reading = async {
            let ((), o, ()) = tokio::join!(feed, stdout_part, stderr_part);
            o
        };
        tokio::pin!(reading);
        tokio::select! {
            o = &mut reading => (child.wait().await, Some(o)),
            s = child.wait() => {
                // Exited: read a moment longer for what it wrote last, but not until a
                // child of it that holds the pipe lets go.
                (s, tokio::time::timeout(AFTER_EXIT, &mut reading).await.ok())
            }
        }
    };
    // Whatever is left of the group (a child that outlived the program) goes now.
    drop(group);
    if matches!(complete, Some(Ok(false))) {
        return Err(ProgramFailure::Error(HandlerError::permanent_msg(format!(
            "{what}: `{program}` wrote more than {max_output} bytes to its standard output (its max_output_bytes); it was stopped"
        ))));
    }
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return Err(ProgramFailure::Error(HandlerError::msg(format!(
                "{what}: waiting for `{program}` failed: {e}"
            ))));
        }
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err).trim().to_owned();
        return Err(ProgramFailure::Exited(format!(
            "`{program}` exited with {status}: {stderr}"
        )));
    }
    Ok(out)
}
