//! Steps on the Process executor, in child processes.

use super::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Job {
    n: u64,
    /// `ok`, `fail`, `panic`, `sleep`, `slow`, or `abort-once:PATH` (aborts the child the
    /// first time, when PATH does not exist yet).
    mode: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobDone {
    pid: u32,
    n: u64,
}

#[derive(Event, Default)]
#[event(
    name = "in_child",
    executor = Process,
    executor_config(max_workers = 2, max_tasks_per_child = 3),
    retry(max_attempts = 2, backoff_factor = 0.0),
    timeout = "3s"
)]
struct InChild;

impl Process for InChild {
    type Input = Job;
    type Output = JobDone;
    async fn process(&self, _ctx: &mut ExecutionContext, job: Job) -> Outcome<JobDone> {
        match job.mode.as_str() {
            "fail" => return Outcome::failure("nope"),
            "panic" => panic!("the step panicked on purpose"),
            "sleep" => tokio::time::sleep(Duration::from_secs(30)).await,
            "slow" => tokio::time::sleep(Duration::from_millis(300)).await,
            m if m.starts_with("abort-once:") => {
                let path = &m["abort-once:".len()..];
                if std::fs::metadata(path).is_err() {
                    std::fs::write(path, b"x").ok();
                    std::process::abort();
                }
            }
            _ => {}
        }
        Outcome::success(JobDone {
            pid: std::process::id(),
            n: job.n * 2,
        })
    }
}

fn job(n: u64, mode: &str) -> Job {
    Job {
        n,
        mode: mode.into(),
    }
}

/// An idle child killed from outside is replaced before it is handed a task, so the next
/// run does not fail with "the child process ended" for a task it never ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_child_killed_from_outside_is_replaced_before_its_next_task() {
    let p = Pipeline::builder("killed_child")
        .step::<InChild>()
        .build()
        .unwrap();
    let run = p.run(job(1, "ok")).await;
    let first = run
        .output::<JobDone>()
        .unwrap_or_else(|| panic!("{}", run.trace_text()));
    let killed = std::process::Command::new("kill")
        .args(["-9", &first.pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let run = p.run(job(2, "ok")).await;
    let second = run
        .output::<JobDone>()
        .unwrap_or_else(|| panic!("{}", run.trace_text()));
    assert_ne!(second.pid, first.pid, "ran in a new child");
    let retried = run
        .trace()
        .iter()
        .any(|(_, s)| matches!(s, Signal::StepRetried { .. }));
    assert!(
        !retried,
        "the dead child was handed the task: {}",
        run.trace_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_steps_run_in_reused_children_that_are_replaced() {
    let p = Pipeline::builder("children")
        .step::<InChild>()
        .build()
        .unwrap();
    let me = std::process::id();
    let mut pids = Vec::new();
    for n in 0..4 {
        let run = p.run(job(n, "ok")).await;
        let done = run
            .output::<JobDone>()
            .unwrap_or_else(|| panic!("{}", run.trace_text()));
        assert_eq!(done.n, n * 2, "the input and output crossed as data");
        pids.push(done.pid);
    }
    assert!(pids.iter().all(|p| *p != me), "ran in a child: {pids:?}");
    // max_tasks_per_child = 3: three tasks in one child, then a new one.
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[1], pids[2]);
    assert_ne!(pids[2], pids[3]);

    let run = p.run(job(1, "fail")).await;
    assert!(matches!(run.status(), RunStatus::Failed { message, .. } if message == "nope"));

    // A panic fails the attempt; the policy retries it once; both fail.
    let run = p.run(job(1, "panic")).await;
    let retried = run
        .trace()
        .iter()
        .filter(|(_, s)| matches!(s, Signal::StepRetried { .. }))
        .count();
    assert_eq!(retried, 1, "{}", run.trace_text());
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("panicked on purpose"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_aborts_or_hangs_fails_only_that_attempt() {
    let p = Pipeline::builder("crashes")
        .step::<InChild>()
        .build()
        .unwrap();
    let marker =
        std::env::temp_dir().join(format!("eventflow-abort-{}", uuid::Uuid::new_v4().simple()));
    let run = p
        .run(job(4, &format!("abort-once:{}", marker.display())))
        .await;
    assert!(
        run.is_success(),
        "the retry ran in a new child: {}",
        run.trace_text()
    );
    assert!(
        run.trace().iter().any(|(_, s)| matches!(s,
        Signal::StepRetried { error, .. } if error.contains("child process"))),
        "{}",
        run.trace_text()
    );
    let _ = std::fs::remove_file(&marker);

    let hangs = Pipeline::builder("hangs")
        .step::<InChild>()
        .configure(|o| {
            o.timeout = Some(Duration::from_millis(300));
            o.retry.max_attempts = 1;
        })
        .build()
        .unwrap();
    let run = hangs.run(job(1, "sleep")).await;
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("timed out")),
        "{:?}",
        run.status()
    );
    // The hung child was killed; the next task gets a fresh one.
    assert!(hangs.run(job(2, "ok")).await.is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_max_workers_children_run_at_once() {
    let p = Pipeline::builder("fan-out")
        .for_each(<InChild as eventflow::pipeline::PipelineEvent>::step())
        .build()
        .unwrap();
    let jobs: Vec<Job> = (0..6).map(|n| job(n, "slow")).collect();
    let run = p.run(ForEachInput::new(jobs)).await;
    let done = run.output::<TaskOutputs>().unwrap().take::<JobDone>();
    assert_eq!(done.len(), 6, "{}", run.trace_text());
    let mut pids: Vec<u32> = done.iter().map(|d| d.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    // Two workers, three tasks each before they retire.
    assert_eq!(pids.len(), 2, "{pids:?}");
}

#[derive(Event, Default)]
#[event(
    name = "bounded_child",
    executor = Process,
    executor_config(max_memory = "256MiB", max_cpu_time = "1s")
)]
struct BoundedChild;

impl Process for BoundedChild {
    type Input = Job;
    type Output = JobDone;
    async fn process(&self, _ctx: &mut ExecutionContext, job: Job) -> Outcome<JobDone> {
        match job.mode.as_str() {
            "hog" => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    kept.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&kept);
                }
            }
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => {}
        }
        Outcome::success(JobDone {
            pid: std::process::id(),
            n: job.n,
        })
    }
}

/// The resource limits of `executor_config` bound steps' children as they bound
/// handlers': the attempt fails naming the limit, and the next runs in a fresh child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_memory_or_cpu_limit_fails_naming_it() {
    let p = Pipeline::builder("bounded")
        .step::<BoundedChild>()
        .build()
        .unwrap();
    for (mode, limit) in [
        ("hog", "max_memory = 256 MiB"),
        ("spin", "max_cpu_time = 1s"),
    ] {
        let run = p.run(job(1, mode)).await;
        assert!(
            matches!(run.status(), RunStatus::Failed { message, .. } if message.contains(limit)),
            "{mode}: {}",
            run.trace_text()
        );
        let run = p.run(job(7, "ok")).await;
        let done = run
            .output::<JobDone>()
            .unwrap_or_else(|| panic!("{}", run.trace_text()));
        assert_eq!(done.n, 7, "a fresh child after {mode}");
    }
}
