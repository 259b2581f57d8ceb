//! Every handler signature the macro accepts.
use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "user.created")]
struct UserCreated {
    id: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("mine")]
struct MyError;

#[event_handler("user.created")]
async fn typed(_e: UserCreated) -> Result<(), HandlerError> { Ok(()) }

#[event_handler("user.created")]
async fn typed_ref_ctx_first(_ctx: &HandlerContext, _e: &UserCreated) -> eventflow::Result<()> { Ok(()) }

#[event_handler("user.created")]
async fn typed_ctx_by_value(_e: UserCreated, _ctx: HandlerContext) -> Result<(), std::io::Error> { Ok(()) }

#[event_handler("user.*")]
async fn envelope(_e: Envelope) {}

#[event_handler("user.**")]
async fn envelope_ref(_e: &Envelope) -> () {}

#[derive(Serialize)]
struct Price {
    cents: u64,
}

#[event_handler("user.created", name = "with_value")]
async fn with_value(e: UserCreated) -> Result<Price, HandlerError> { Ok(Price { cents: e.id }) }

#[event_handler("user.created", name = "plain_with_value")]
fn plain_with_value(e: &UserCreated) -> Result<Option<u64>, MyError> { Ok(Some(e.id)) }

#[event_handler("user.created", name = "json_value")]
async fn json_value(_e: &Envelope) -> eventflow::Result<serde_json::Value> { Ok(serde_json::json!({"ok": true})) }

#[event_handler(
    "user.created",
    name = "isolated",
    executor = Process,
    executor_config(max_workers = 2, max_tasks_per_child = 100, max_memory = "256MiB", max_cpu_time = "10s")
)]
async fn isolated(e: UserCreated) -> Result<u64, HandlerError> { Ok(e.id) }

#[event_handler("**", name = "everything")]
async fn own_error(_e: &Envelope) -> Result<(), MyError> { Ok(()) }

#[event_handler("user.created")]
fn blocking(_e: UserCreated) -> Result<(), HandlerError> { Ok(()) }

#[event_handler("user.created", executor = ThreadPool)]
fn blocking_ref(_e: &Envelope, ctx: &HandlerContext) {
    let _ = ctx.publish_blocking(UserCreated { id: 2 });
}

#[event_handler("user.created", executor = ThreadPool, executor_config(max_workers = 4, max_tasks_per_child = 50, thread_name_prefix = "report-"))]
async fn async_on_pool(_e: &Envelope) {}

#[event_handler(
    "user.created",
    name = "all_options",
    retry(max_attempts = 3, backoff_factor = 0.1, max_backoff = 2, jitter, retry_on = [std::io::Error, MyError]),
    timeout = "1.5s",
    executor = Tokio,
    priority = -3,
    concurrency = 8,
)]
async fn all_options(_e: UserCreated, _ctx: &HandlerContext) -> Result<(), HandlerError> { Ok(()) }

#[event_handler("user.created", retry())]
async fn default_retry(_e: &Envelope) {}

#[event_handler("user.created", crate = "::eventflow")]
async fn crate_override(_e: &Envelope) {}

fn main() {
    // The annotated functions are still ordinary functions.
    let _ = typed(UserCreated { id: 1 });
    assert!(eventflow::Registry::global().handler("all_options").is_some());
    let p = &eventflow::Registry::global().handler("all_options").unwrap().options;
    assert_eq!(p.retry.max_attempts, 3);
    assert_eq!(p.priority, -3);
    assert_eq!(p.concurrency, Some(8));
    assert_eq!(p.timeout, Some(std::time::Duration::from_millis(1500)));
}
