//! Handlers on the Process executor (basefunctions' CORELET mode): each attempt in a reused
//! child process; a crash, hang or resource limit fails that attempt only, and the next
//! one runs in a fresh child.
#![allow(clippy::unwrap_used)] // test code

use std::time::Duration;

use eventflow::prelude::*;
use eventflow::{PublishOptions, ReplyError};

/// Lets this test binary serve handlers of the Process executor in its child processes.
#[test]
fn eventflow_process_worker() {
    eventflow::pipeline::serve_process_steps();
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Ran {
    value: u64,
    pid: u32,
}

fn n_of(e: &Envelope) -> u64 {
    e.payload_json()
        .ok()
        .and_then(|v| v["n"].as_u64())
        .unwrap_or(0)
}

#[event_handler(
    "proc.double",
    name = "proc_double",
    executor = Process,
    executor_config(max_workers = 2, max_tasks_per_child = 100)
)]
async fn proc_double(e: &Envelope) -> Result<Ran, HandlerError> {
    Ok(Ran {
        value: n_of(e) * 2,
        pid: std::process::id(),
    })
}

#[event_handler("proc.plain", name = "proc_plain", executor = Process)]
fn proc_plain(e: &Envelope) -> Result<Ran, HandlerError> {
    Ok(Ran {
        value: n_of(e) + 1,
        pid: std::process::id(),
    })
}

/// Crashes its child on the first attempt, in the way `what` says.
#[event_handler(
    "proc.crash",
    name = "proc_crash",
    executor = Process,
    timeout = "500ms",
    retry(max_attempts = 2, backoff_factor = 0.0)
)]
async fn proc_crash(e: &Envelope, ctx: &HandlerContext) -> Result<Ran, HandlerError> {
    if ctx.attempt() == 1 {
        match e.payload_json()?["how"].as_str() {
            Some("panic") => panic!("the handler panicked on purpose"),
            Some("abort") => std::process::abort(),
            Some("exit") => std::process::exit(9),
            Some("kill") => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &std::process::id().to_string()])
                    .status();
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Some("hang") => tokio::time::sleep(Duration::from_secs(3600)).await,
            _ => {}
        }
    }
    Ok(Ran {
        value: u64::from(ctx.attempt()),
        pid: std::process::id(),
    })
}

#[event_handler(
    "proc.hog",
    name = "proc_hog",
    executor = Process,
    executor_config(max_memory = "256MiB")
)]
async fn proc_hog(e: &Envelope) -> Result<Ran, HandlerError> {
    if e.payload_json()?["hog"].as_bool() == Some(true) {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            kept.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&kept);
        }
    }
    Ok(Ran {
        value: 0,
        pid: std::process::id(),
    })
}

#[event_handler(
    "proc.spin",
    name = "proc_spin",
    executor = Process,
    executor_config(max_cpu_time = "1s")
)]
async fn proc_spin(e: &Envelope) -> Result<Ran, HandlerError> {
    if e.payload_json()?["spin"].as_bool() == Some(true) {
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
    Ok(Ran {
        value: 0,
        pid: std::process::id(),
    })
}

fn ev(name: &str, payload: serde_json::Value) -> Envelope {
    Envelope::with_payload(name.into(), eventflow::Payload::json(payload))
}

async fn bus(handlers: &[&str]) -> EventBus {
    EventBus::builder()
        .only(handlers.iter().copied())
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_process_handler_runs_in_a_reused_child_and_returns_its_value() {
    let bus = bus(&["proc_double", "proc_plain"]).await;
    let mut pids = std::collections::HashSet::new();
    for n in 0..6 {
        let r: Ran = bus
            .request_envelope(
                ev("proc.double", serde_json::json!({ "n": n })),
                PublishOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(r.value, n * 2);
        assert_ne!(r.pid, std::process::id(), "ran in a child");
        pids.insert(r.pid);
    }
    // One request at a time: the first child is reused.
    assert_eq!(pids.len(), 1, "children reused: {pids:?}");
    let r: Ran = bus
        .request_envelope(
            ev("proc.plain", serde_json::json!({ "n": 4 })),
            PublishOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.value, 5);
    assert_ne!(r.pid, std::process::id());
}

#[tokio::test]
async fn a_crashed_or_hung_child_fails_one_attempt_and_is_replaced() {
    let bus = bus(&["proc_crash"]).await;
    for how in ["panic", "abort", "exit", "kill", "hang"] {
        let report = bus
            .dispatch_envelope(ev("proc.crash", serde_json::json!({ "how": how })))
            .await
            .unwrap();
        let o = report.outcome("proc_crash").unwrap();
        assert!(o.succeeded(), "{how}: {:?}", o.status);
        assert_eq!(o.attempts, 2, "{how}: the second attempt succeeded");
        let r: Ran = o.value().unwrap();
        assert_eq!(r.value, 2, "{how}");
        assert_ne!(r.pid, std::process::id(), "{how}");
    }
}

#[tokio::test]
async fn a_child_that_allocates_without_end_is_stopped_naming_max_memory() {
    let bus = bus(&["proc_hog"]).await;
    let report = bus
        .dispatch_envelope(ev("proc.hog", serde_json::json!({ "hog": true })))
        .await
        .unwrap();
    let err = report
        .outcome("proc_hog")
        .unwrap()
        .error()
        .unwrap()
        .to_string();
    assert!(err.contains("max_memory = 256 MiB"), "{err}");
    // The next attempt runs in a fresh child.
    let r: Ran = bus
        .request_envelope(
            ev("proc.hog", serde_json::json!({ "hog": false })),
            PublishOptions::new(),
        )
        .await
        .unwrap();
    assert_ne!(r.pid, std::process::id());
}

#[tokio::test]
async fn a_child_that_spins_is_stopped_naming_max_cpu_time() {
    let bus = bus(&["proc_spin"]).await;
    let started = std::time::Instant::now();
    let r = bus
        .request_envelope::<Ran>(
            ev("proc.spin", serde_json::json!({ "spin": true })),
            PublishOptions::new(),
        )
        .await;
    match r {
        Err(ReplyError::Failed { error, .. }) => {
            assert!(error.contains("max_cpu_time = 1s"), "{error}")
        }
        other => panic!("expected the CPU limit, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let r: Ran = bus
        .request_envelope(
            ev("proc.spin", serde_json::json!({ "spin": false })),
            PublishOptions::new(),
        )
        .await
        .unwrap();
    assert_ne!(r.pid, std::process::id());
}

#[tokio::test]
async fn a_handler_made_at_run_time_cannot_run_on_the_process_executor() {
    let err = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("not-registered", "proc.x", |_e, _ctx| async {
                Ok::<(), HandlerError>(())
            })
            .executor(eventflow::Executor::Process, Default::default()),
        )
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("registered name"), "{err}");
}
