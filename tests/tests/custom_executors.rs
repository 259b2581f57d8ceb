//! Executors of the user's own (`Executor::Custom`): a pinned thread runs handlers and
//! pipeline steps chosen with `executor = custom(path)` or `Handler::custom_executor`.
#![allow(clippy::unwrap_used)] // test code

use std::sync::mpsc;
use std::sync::{LazyLock, Mutex};

use eventflow::executor::{CustomExecutor, Job, Spawn};
use eventflow::pipeline::{Outcome, OutcomeExt, Pipeline};
use eventflow::prelude::*;

/// One thread, named `pinned-worker`, running every job in turn.
struct PinnedThread(Mutex<mpsc::Sender<Job>>);

impl PinnedThread {
    fn start(name: &str) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in rx {
                    job.run();
                }
            })
            .unwrap();
        PinnedThread(Mutex::new(tx))
    }
}

impl Spawn for PinnedThread {
    fn spawn(&self, job: Job) {
        let _ = self.0.lock().unwrap().send(job);
    }
}

static PINNED: LazyLock<CustomExecutor> =
    LazyLock::new(|| CustomExecutor::new(PinnedThread::start("pinned-worker")));

fn pinned() -> CustomExecutor {
    PINNED.clone()
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event_handler("custom.async", name = "on_pinned_async", executor = custom(pinned))]
async fn on_pinned_async(_e: &Envelope) {
    SEEN.lock()
        .unwrap()
        .push(format!("async {}", thread_name()));
}

#[event_handler("custom.plain", name = "on_pinned_plain", executor = custom(pinned))]
fn on_pinned_plain(_e: &Envelope) {
    SEEN.lock()
        .unwrap()
        .push(format!("plain {}", thread_name()));
}

#[event(name = "pinned_step", executor = custom(pinned))]
fn pinned_step(n: u32) -> Outcome<String> {
    Outcome::success(format!("{n} on {}", thread_name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_and_steps_run_on_an_executor_of_the_users() {
    let bus = EventBus::builder()
        .only(["on_pinned_async", "on_pinned_plain"])
        .build()
        .await
        .unwrap();
    for name in ["custom.async", "custom.plain"] {
        let report = bus.dispatch_raw(name, serde_json::json!({})).await.unwrap();
        assert!(report.is_success(), "{report:?}");
    }
    let mut seen = SEEN.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["async pinned-worker", "plain pinned-worker"]);

    let run = Pipeline::builder("pinned")
        .step_named("pinned_step")
        .build()
        .unwrap()
        .run(7u32)
        .await;
    assert_eq!(run.output::<String>().unwrap(), "7 on pinned-worker");
    bus.shutdown().await.unwrap();
}

/// Drops every job without running it.
struct Drops;

impl Spawn for Drops {
    fn spawn(&self, job: Job) {
        drop(job);
    }
}

#[tokio::test]
async fn a_job_the_executor_drops_fails_its_attempt_and_a_missing_executor_is_refused() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("dropped", "custom.dropped", |_e, _ctx| async {
                Ok::<(), HandlerError>(())
            })
            .custom_executor(CustomExecutor::new(Drops)),
        )
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("custom.dropped", serde_json::json!({}))
        .await
        .unwrap();
    let err = report
        .outcome("dropped")
        .unwrap()
        .error()
        .unwrap()
        .to_string();
    assert!(err.contains("dropped the job"), "{err}");

    let err = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("nowhere", "custom.none", |_e, _ctx| async {
                Ok::<(), HandlerError>(())
            })
            .executor(Executor::Custom, ExecutorConfig::new()),
        )
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("names no executor"), "{err}");
}
