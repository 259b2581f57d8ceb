//! Observers, thread-pool and command steps, and a pipeline started by a published event.

use super::*;

#[tokio::test]
async fn observers_see_every_signal_in_order() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let p = Pipeline::builder("observed")
        .then(step("one", |n: u32| Outcome::success(n)))
        .observer(move |s: &Signal| {
            let kind = match s {
                Signal::PipelineStarted { .. } => "started",
                Signal::StepStarted { .. } => "step",
                Signal::StepFinished {
                    status: StepStatus::Succeeded,
                    ..
                } => "ok",
                Signal::PipelineFinished { .. } => "finished",
                _ => "other",
            };
            g.lock().unwrap().push(kind);
        })
        .build()
        .unwrap();
    let run = p.run(1u32).await;
    assert_eq!(*got.lock().unwrap(), ["started", "step", "ok", "finished"]);
    assert_eq!(run.trace().len(), 4, "the trace is the same signals");
}

#[derive(Event, Default)]
#[event(
    name = "pooled",
    executor = ThreadPool,
    executor_config(max_workers = 1, max_tasks_per_child = 2, thread_name_prefix = "payment-")
)]
struct Pooled;

impl Process for Pooled {
    type Input = u32;
    type Output = String;
    async fn process(&self, _ctx: &mut ExecutionContext, _n: u32) -> Outcome<String> {
        Outcome::success(std::thread::current().name().unwrap_or("?").to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_pool_steps_run_on_named_threads_replaced_after_max_tasks() {
    let p = Pipeline::builder("pool").step::<Pooled>().build().unwrap();
    let mut names = Vec::new();
    for n in 0..5u32 {
        names.push(p.run(n).await.output::<String>().unwrap());
    }
    assert!(names.iter().all(|n| n.starts_with("payment-")), "{names:?}");
    // Two tasks per thread: a new thread every two runs.
    assert_eq!(names[0], names[1]);
    assert_ne!(names[1], names[2]);
    assert_eq!(names[2], names[3]);
    assert_ne!(names[3], names[4]);
}

#[tokio::test]
async fn a_published_event_starts_a_pipeline() {
    let done = Arc::new(Mutex::new(Vec::new()));
    let d = done.clone();
    let p = Pipeline::builder("checkout")
        .step_named("validate_order")
        .then(step("record", move |o: Order| {
            d.lock().unwrap().push(o.id);
            Outcome::success(o)
        }))
        .build()
        .unwrap();
    let bus = EventBus::builder()
        .without_registry()
        .handler(p.handler::<Order>("run-checkout", "order.placed"))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw(
            "order.placed",
            serde_json::json!({ "id": 31, "total": 5, "premium": false }),
        )
        .await
        .unwrap();
    assert!(report.is_success());
    assert_eq!(*done.lock().unwrap(), [31]);
    let report = bus
        .dispatch_raw(
            "order.placed",
            serde_json::json!({ "id": 32, "total": 0, "premium": false }),
        )
        .await
        .unwrap();
    assert!(!report.is_success(), "a failed run fails the delivery");
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn command_steps_talk_json_over_stdin_and_stdout() {
    let wrap = StepDef::command::<u32, Vec<u32>>(
        "wrap",
        "sh",
        ["-c", "read n; echo \"[$n, $((n * 2))]\""],
        StepOptions::DEFAULT,
    );
    let run = run_alone("cmd", wrap, 21u32).await;
    assert_eq!(
        run.output::<Vec<u32>>(),
        Some(vec![21, 42]),
        "{}",
        run.trace_text()
    );

    let fails = StepDef::command::<u32, u32>(
        "fails",
        "sh",
        ["-c", "echo 'disk full' >&2; exit 3"],
        StepOptions::DEFAULT,
    );
    let run = run_alone("cmd", fails, 1u32).await;
    let RunStatus::Failed { message, .. } = run.status() else {
        panic!("{:?}", run.status());
    };
    assert!(
        message.contains("disk full") && message.contains('3'),
        "{message}"
    );

    let garbled = StepDef::command::<u32, u32>(
        "garbled",
        "sh",
        ["-c", "echo not-json"],
        StepOptions::DEFAULT,
    );
    let run = run_alone("cmd", garbled, 1u32).await;
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("is not a `u32`"))
    );
    let missing = StepDef::command::<u32, u32>(
        "missing",
        "/nonexistent/program",
        Vec::<String>::new(),
        StepOptions::DEFAULT,
    );
    let run = run_alone("cmd", missing, 1u32).await;
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("cannot start"))
    );

    let slow = StepDef::command::<u32, u32>(
        "slow",
        "sh",
        ["-c", "sleep 5; echo 1"],
        StepOptions {
            timeout: Some(Duration::from_millis(100)),
            ..StepOptions::DEFAULT
        },
    );
    let run = run_alone("cmd", slow, 1u32).await;
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("timed out")),
        "{:?}",
        run.status()
    );
}
