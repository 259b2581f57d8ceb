//! Handlers on the Process executor (basefunctions' CORELET mode): each attempt runs in a
//! reused child process of this program, which finds the handler by its registered name.
//!
//! The parent sends the envelope as JSON; the child decodes it, runs the handler's
//! registered function and answers with its value (JSON) or its error, permanent or
//! retryable. A panic, abort, kill, hang or resource limit of the child fails that
//! attempt only (retried per the handler's policy) and the child is replaced (see
//! [`pipeline::process`](crate::pipeline::process) for the pool, its settings and what
//! `main` must begin with).
//!
//! In the child, a handler has no bus to publish into: `ctx.publish` fails with an error
//! saying so (return a value instead, and publish from the parent).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::EventBus;
use super::handler::{HandlerContext, Invoke};
use super::registry::HandlerRecord;
use crate::backend::{Backend, BackendHealth, DeliverySink};
use crate::dead_letter::{DeadLetterStore, MemoryDeadLetters};
use crate::delivery::HandlerResult;
use crate::error::{ConnectionError, HandlerError, PublishError};
use crate::event::Envelope;
use crate::pipeline::process::{ChildWork, EXCEPTION, FAILURE, ProcessPool, SUCCESS};
use crate::util::BoxFuture;

/// The prefix of a handler's name in a request to a child.
const HANDLER_PREFIX: &str = "handler:";

inventory::submit! {
    ChildWork { prefix: HANDLER_PREFIX, serve: serve_handler }
}

/// Whether a handler of this name is registered (so that a child can find it).
pub(super) fn is_registered(name: &str) -> bool {
    inventory::iter::<HandlerRecord>
        .into_iter()
        .any(|r| r.name == name)
}

/// One attempt of handler `name` in a child of `pool`.
pub(super) async fn run_in_child(
    pool: &ProcessPool,
    name: &str,
    envelope: &Envelope,
    timeout: Option<Duration>,
) -> HandlerResult {
    let input = serde_json::to_vec(envelope).map_err(|e| {
        HandlerError::permanent_msg(format!(
            "handler `{name}`: the envelope cannot be sent to a child process: {e}"
        ))
    })?;
    let what = format!("handler `{name}`");
    let target = format!("{HANDLER_PREFIX}{name}");
    let (kind, payload) = pool.exchange(&what, &target, &input, timeout).await?;
    match kind {
        SUCCESS => match serde_json::from_slice::<serde_json::Value>(&payload) {
            Ok(serde_json::Value::Null) => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) => Err(HandlerError::permanent_msg(format!(
                "{what}: the child's value is not JSON: {e}"
            ))),
        },
        FAILURE => Err(HandlerError::permanent_msg(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        _ => Err(HandlerError::msg(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
    }
}

/// The child's side: runs the registered handler `name` on the envelope in `input`.
fn serve_handler(name: String, input: Vec<u8>) -> BoxFuture<'static, (u8, Vec<u8>)> {
    Box::pin(async move {
        let Some(record) = inventory::iter::<HandlerRecord>
            .into_iter()
            .find(|r| r.name == name)
        else {
            return (
                FAILURE,
                format!("no handler `{name}` is registered in the child process").into_bytes(),
            );
        };
        let envelope: Envelope = match serde_json::from_slice(&input) {
            Ok(e) => e,
            Err(e) => {
                return (
                    FAILURE,
                    format!("the envelope sent to the child is invalid: {e}").into_bytes(),
                );
            }
        };
        let bus = match child_bus().await {
            Ok(b) => b,
            Err(e) => return (EXCEPTION, e.into_bytes()),
        };
        let ctx = HandlerContext::new(envelope, Arc::from(name.as_str()), bus);
        let result = match record.invoke {
            Invoke::Async(f) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx))) {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(p) => Err(p),
            },
            Invoke::Blocking(f) => std::panic::catch_unwind(AssertUnwindSafe(|| f(ctx))),
            Invoke::Batch(_) => Ok(Err(HandlerError::permanent_msg(
                "a batched handler does not run on the Process executor",
            ))),
        };
        match result {
            Ok(Ok(value)) => match serde_json::to_vec(&value) {
                Ok(json) => (SUCCESS, json),
                Err(e) => (
                    FAILURE,
                    format!("the value does not serialize: {e}").into_bytes(),
                ),
            },
            Ok(Err(e)) if !e.is_retryable() => (FAILURE, e.to_string().into_bytes()),
            Ok(Err(e)) => (EXCEPTION, e.to_string().into_bytes()),
            Err(p) => (
                EXCEPTION,
                format!(
                    "the handler panicked: {}",
                    crate::executor::panic_message(&*p)
                )
                .into_bytes(),
            ),
        }
    })
}

/// The bus handlers get in a child: one that refuses to publish, saying why.
async fn child_bus() -> Result<EventBus, String> {
    static BUS: tokio::sync::OnceCell<EventBus> = tokio::sync::OnceCell::const_new();
    BUS.get_or_try_init(|| async {
        EventBus::builder()
            .without_registry()
            .backend(ChildBackend::default())
            .build()
            .await
            .map_err(|e| format!("cannot make the child's bus: {e}"))
    })
    .await
    .cloned()
}

/// The backend of a child's bus: nothing is delivered, and publishing is refused.
#[derive(Default)]
struct ChildBackend {
    dead_letters: Arc<MemoryDeadLetters>,
}

fn refused(name: &str) -> PublishError {
    PublishError::Backend {
        name: name.to_owned(),
        source: ConnectionError {
            backend: "process-child",
            message: "a handler on the Process executor runs in a child process, which cannot \
                      publish: return a value instead and publish from the parent"
                .into(),
            source: None,
        },
    }
}

impl Backend for ChildBackend {
    fn name(&self) -> &'static str {
        "process-child"
    }
    fn start(&self, _sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async { Ok(()) })
    }
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(std::future::ready(Err(refused(&envelope.name))))
    }
    fn publish_delayed(
        &self,
        envelope: Envelope,
        _delay: Duration,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(std::future::ready(Err(refused(&envelope.name))))
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        self.dead_letters.clone()
    }
    fn health(&self) -> BoxFuture<'_, BackendHealth> {
        Box::pin(async { BackendHealth::new(true) })
    }
}
