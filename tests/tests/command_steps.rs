//! Command steps (an external program per attempt) that misbehave: a timeout kills the
//! program's own children too, a child of the program that holds its output pipe does not
//! hold the step, and output past the bound stops the program.
#![allow(clippy::unwrap_used)] // test code

use std::time::Duration;

use eventflow::pipeline::{Pipeline, RunStatus, StepDef, StepOptions};

async fn run(step: StepDef) -> eventflow::pipeline::PipelineRun {
    let p = Pipeline::builder("cmd").then(step).build().unwrap();
    tokio::time::timeout(Duration::from_secs(20), p.run(1u32))
        .await
        .expect("the command step did not end")
}

/// Whether process `pid` is gone (or a zombie waiting to be reaped).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pid written to `pidfile`, and whether that process is gone within 5 s.
async fn grandchild_dies(pidfile: &std::path::Path) -> (u32, bool) {
    let pid: u32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..250 {
        if gone(pid) {
            return (pid, true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (pid, false)
}

fn failure(run: &eventflow::pipeline::PipelineRun) -> String {
    match run.status() {
        RunStatus::Failed { message, .. } => message.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_programs_children_too() {
    let dir = std::env::temp_dir().join(format!("eventflow-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let step = StepDef::command::<u32, u32>(
        "spawns",
        "sh",
        ["-c", &script],
        StepOptions {
            timeout: Some(Duration::from_millis(300)),
            ..StepOptions::DEFAULT
        },
    );
    let r = run(step).await;
    assert!(failure(&r).contains("timed out"), "{}", failure(&r));
    let (pid, dead) = grandchild_dies(&pidfile).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(dead, "the program's child {pid} outlived the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_holding_the_output_pipe_does_not_hold_the_step() {
    // The program answers and exits; its background child keeps stdout open for 30 s.
    let step = StepDef::command::<u32, u32>(
        "answers",
        "sh",
        ["-c", "sleep 30 & echo 7"],
        StepOptions::DEFAULT,
    );
    let r = run(step).await;
    assert_eq!(r.output::<u32>(), Some(7), "{}", r.trace_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_past_the_bound_stops_the_program() {
    let step = StepDef::command_limited::<u32, u32>(
        "loud",
        "sh",
        ["-c", "yes"],
        StepOptions::DEFAULT,
        1 << 20,
    );
    let r = run(step).await;
    let message = failure(&r);
    assert!(message.contains("more than 1048576 bytes"), "{message}");
}

/// A bus with the command handler `h` alone.
async fn bus_with(h: eventflow::Handler) -> eventflow::EventBus {
    eventflow::EventBus::builder()
        .without_registry()
        .handler(h)
        .build()
        .await
        .unwrap()
}

/// A command handler (basefunctions' CMD mode): the envelope on standard input, exit 0 a
/// success, another exit a failure with its standard error, retried; a timeout kills the
/// program's group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_handlers_take_the_envelope_and_fail_and_time_out_cleanly() {
    let dir = std::env::temp_dir().join(format!("eventflow-cmdh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seen = dir.join("stdin.json");
    let bus = bus_with(eventflow::Handler::command(
        "archive",
        "order.*",
        "sh",
        ["-c".to_owned(), format!("cat > {}", seen.display())],
    ))
    .await;
    let report = bus
        .dispatch_raw("order.closed", serde_json::json!({ "order": 7 }))
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(got["name"], "order.closed");
    assert_eq!(got["payload"]["order"], 7);

    let bus = bus_with(
        eventflow::Handler::command("fails", "order.*", "sh", ["-c", "echo boom >&2; exit 3"])
            .retry(eventflow::RetryPolicy::attempts(2).backoff(0.0, 0.0)),
    )
    .await;
    let report = bus
        .dispatch_raw("order.closed", serde_json::json!({}))
        .await
        .unwrap();
    let o = report.outcome("fails").unwrap();
    assert_eq!(o.attempts, 2);
    let err = o.error().unwrap().to_string();
    assert!(
        err.contains("exit status: 3") && err.contains("boom"),
        "{err}"
    );

    let pidfile = dir.join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let bus = bus_with(
        eventflow::Handler::command("hangs", "order.*", "sh", ["-c".to_owned(), script])
            .timeout(Duration::from_millis(300)),
    )
    .await;
    let report = bus
        .dispatch_raw("order.closed", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        report.outcome("hangs").unwrap().error().unwrap().kind(),
        eventflow::HandlerErrorKind::TimedOut
    );
    let (pid, dead) = grandchild_dies(&pidfile).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(dead, "the program's child {pid} outlived the timeout");
}
