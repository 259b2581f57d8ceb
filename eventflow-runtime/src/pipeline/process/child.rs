//! The child side: a process started to serve steps, found by their registered names.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use super::*;
use crate::pipeline::step::{Attempt, ExecutionContext, StepDef};

/// Turns this process into a step worker if it was started as one; returns at once
/// otherwise. See the [module documentation](super).
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

/// The child's loop: one request at a time, until the parent closes the socket.
pub(crate) async fn serve(path: PathBuf) -> std::io::Result<()> {
    let mut s = UnixStream::connect(&path).await?;
    let mut steps: HashMap<String, StepDef> = HashMap::new();
    loop {
        let mut kind = [0u8; 1];
        match s.read_exact(&mut kind).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let id = read_part(&mut s).await?;
        let name = String::from_utf8_lossy(&read_part(&mut s).await?).into_owned();
        let input = read_part(&mut s).await?;
        if let Some((work, rest)) = inventory::iter::<ChildWork>
            .into_iter()
            .find_map(|w| name.strip_prefix(w.prefix).map(|rest| (w, rest.to_owned())))
        {
            let (kind, payload) = (work.serve)(rest, input).await;
            write_frame(&mut s, kind, &[&id, &payload]).await?;
            continue;
        }
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
        // The answer carries its request's id, so the parent can tell it apart.
        write_frame(&mut s, kind, &[&id, &payload]).await?;
    }
}

pub(crate) async fn run_here(
    steps: &mut HashMap<String, StepDef>,
    name: &str,
    input: &[u8],
) -> Result<Attempt, String> {
    if !steps.contains_key(name) {
        let record = crate::pipeline::registered(name)
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
        step.start(crate::pipeline::datum::Input::Given(&mut data), ctx)
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
