//! Command handlers (basefunctions' CMD mode): an external program per event.

use std::sync::Arc;

use super::handler::{DynAsync, Handler, HandlerContext, HandlerFn};
use crate::error::HandlerError;
use crate::util::BoxFuture;

impl Handler {
    /// A handler that runs an external program for each event (basefunctions' CMD mode):
    /// the envelope goes to the program as JSON on its standard input; exit status 0 is
    /// success, any other a failure carrying its standard error (retried per the retry
    /// policy). Its standard output is the handler's value: JSON when it parses as JSON,
    /// else the text; empty output is no value. The program runs in a process group of its own: a timeout kills the group,
    /// its children too. Its standard output is read up to
    /// [`DEFAULT_MAX_OUTPUT_BYTES`](crate::pipeline::DEFAULT_MAX_OUTPUT_BYTES) and logged
    /// at debug level; past the bound the attempt fails.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use eventflow_runtime::Handler;
    /// let h = Handler::command("archive", "order.closed", "/usr/local/bin/archive-order", ["--quiet"])
    ///     .timeout(Duration::from_secs(30));
    /// # let _ = h;
    /// ```
    #[track_caller]
    pub fn command<I, S>(
        name: impl Into<String>,
        pattern: impl Into<String>,
        program: impl Into<String>,
        args: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let name = name.into();
        let program: Arc<str> = program.into().into();
        let args: Arc<[String]> = args.into_iter().map(Into::into).collect();
        let what: Arc<str> = format!("handler `{name}`").into();
        let func: Arc<DynAsync> = Arc::new(move |ctx: HandlerContext| {
            let (program, args, what) = (program.clone(), args.clone(), what.clone());
            Box::pin(async move {
                let input = serde_json::to_vec(ctx.envelope()).map_err(HandlerError::permanent)?;
                match crate::executor::run_program(
                    &what,
                    &program,
                    &args,
                    input,
                    crate::pipeline::DEFAULT_MAX_OUTPUT_BYTES,
                )
                .await
                {
                    Ok(out) => {
                        tracing::debug!(handler = %what, output = %String::from_utf8_lossy(&out), "eventflow: command handler done");
                        Ok(command_value(&out))
                    }
                    Err(crate::executor::ProgramFailure::Exited(m)) => Err(HandlerError::msg(m)),
                    Err(crate::executor::ProgramFailure::Error(e)) => Err(e),
                }
            }) as BoxFuture<'static, _>
        });
        Self::from_fn(name, pattern, HandlerFn::Async(func))
    }
}

/// A command's standard output as the handler's value: JSON when it is JSON, else the
/// text (lossy UTF-8); empty or blank output is no value.
fn command_value(out: &[u8]) -> Option<serde_json::Value> {
    let text = String::from_utf8_lossy(out);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    match serde_json::from_str::<serde_json::Value>(trimmed) {
        Ok(serde_json::Value::Null) => None,
        Ok(v) => Some(v),
        Err(_) => Some(serde_json::Value::String(trimmed.to_owned())),
    }
}
