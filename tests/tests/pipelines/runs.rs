//! Runs: panics, inputs handed on, independence of runs, and a run dropped midway.

use super::shared_data::sharing;
use super::*;

#[tokio::test]
async fn an_inline_step_that_panics_fails_that_attempt_and_is_retried() {
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let shaky = StepDef::from_fn(
        "shaky",
        StepOptions {
            retry: eventflow::RetryPolicy::attempts(3).backoff(0.0, 0.0),
            ..StepOptions::DEFAULT
        },
        move |ctx: ExecutionContext, n: u32| {
            let t = t.clone();
            // The first call panics before it makes its future, the second inside it.
            if t.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("before the future");
            }
            async move {
                if t.load(Ordering::SeqCst) == 2 {
                    panic!("inside the future");
                }
                (ctx, Outcome::success(n + 1))
            }
        },
    );
    let p = Pipeline::builder("shaky")
        .then(shaky)
        .then(step("after", |n: u32| Outcome::success(n * 2)))
        .build()
        .unwrap();
    let run = p.run(1u32).await;
    assert_eq!(run.output::<u32>(), Some(4), "{}", run.trace_text());
    assert_eq!(tries.load(Ordering::SeqCst), 3);
    let retried: Vec<String> = run
        .trace()
        .iter()
        .filter_map(|(_, s)| match s {
            Signal::StepRetried { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(retried[0].contains("before the future"), "{retried:?}");
    assert!(retried[1].contains("inside the future"), "{retried:?}");

    // Without retries, the panic ends the run as failed with its message.
    let once = StepDef::from_fn(
        "once",
        StepOptions::DEFAULT,
        |_ctx: ExecutionContext, _n: u32| async move {
            if true {
                panic!("no retry here");
            }
            (_ctx, Outcome::success(0u32))
        },
    );
    let run = run_alone("once", once, 1u32).await;
    assert!(
        matches!(run.status(), RunStatus::Failed { message, .. } if message.contains("no retry here")),
        "{:?}",
        run.status()
    );
}

/// A value that counts its clones.
#[derive(Debug)]
struct Counted(u32, Arc<AtomicU32>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.1.fetch_add(1, Ordering::SeqCst);
        Counted(self.0, self.1.clone())
    }
}

#[tokio::test]
async fn a_step_is_given_its_input_unless_something_reads_it_after() {
    let counted = |n| {
        let clones = Arc::new(AtomicU32::new(0));
        (Counted(n, clones.clone()), clones)
    };
    let take = || step("take", |c: Counted| Outcome::success(c.0));

    // Nothing reads the input after the step: it is moved in, not cloned.
    let plain = Pipeline::builder("plain").then(take()).build().unwrap();
    let (value, clones) = counted(1);
    let run = plain.run(value).await;
    assert_eq!(run.output::<u32>(), Some(1));
    assert_eq!(clones.load(Ordering::SeqCst), 0);

    // A failure branch gets the same input: the step gets a clone, the branch the value.
    let refund = Pipeline::builder("refund")
        .then(step("decline", |_c: Counted| Outcome::<u32>::failure("no")))
        .on_failure(step("refund", |c: Counted| Outcome::success(c.0 + 100)))
        .build()
        .unwrap();
    let (value, clones) = counted(2);
    let run = refund.run(value).await;
    assert_eq!(run.output::<u32>(), Some(102), "{}", run.trace_text());
    assert_eq!(clones.load(Ordering::SeqCst), 1);

    // A step that may be retried gets a clone per attempt.
    let tries = Arc::new(AtomicU32::new(0));
    let flaky = StepDef::from_fn(
        "flaky",
        StepOptions {
            retry: eventflow::RetryPolicy::attempts(3).backoff(0.0, 0.0),
            ..StepOptions::DEFAULT
        },
        {
            let tries = tries.clone();
            move |ctx: ExecutionContext, c: Counted| {
                let tries = tries.clone();
                async move {
                    if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                        return (ctx, Err(std::io::Error::other("first try fails").into()));
                    }
                    (ctx, Outcome::success(c.0))
                }
            }
        },
    );
    let retried = Pipeline::builder("retried").then(flaky).build().unwrap();
    let (value, clones) = counted(3);
    let run = retried.run(value).await;
    assert_eq!(run.output::<u32>(), Some(3), "{}", run.trace_text());
    assert_eq!(clones.load(Ordering::SeqCst), 2);

    // `->` passes the same input on: the first step gets a clone, the last the value.
    let again = step("again", |c: Counted| Outcome::success(c.0 * 10));
    let seq = Pipeline::from_pointy_with("take -> again", vec![take(), again]).unwrap();
    let (value, clones) = counted(4);
    let run = seq.run(value).await;
    assert_eq!(run.output::<u32>(), Some(40), "{}", run.trace_text());
    assert_eq!(clones.load(Ordering::SeqCst), 1);

    // A failed first step that was given its input leaves the run without an output,
    // as before: the run's output is the last successful step's.
    let fails = Pipeline::builder("fails")
        .then(step("no", |_c: Counted| Outcome::<u32>::failure("no")))
        .build()
        .unwrap();
    let (value, clones) = counted(5);
    let run = fails.run(value).await;
    assert!(!run.is_success());
    assert_eq!(run.output::<Counted>().map(|c| c.0), None);
    assert_eq!(clones.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn runs_one_after_another_share_nothing() {
    // Each run starts with a context of its own, whatever ran on the thread before.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = |name, key, fails| sharing(name, key, seen.clone(), fails);
    let stores = Pipeline::builder("stores")
        .then(s("store", Some("a"), false))
        .then(s("after", Some("b"), false))
        .build()
        .unwrap();
    let reads = Pipeline::builder("reads")
        .then(s("read", None, false))
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(stores.run(1u32).await.is_success());
        assert!(reads.run(2u32).await.is_success());
    }
    // A run that fails, and one cancelled while its step waits, leave nothing behind either.
    assert!(
        !Pipeline::builder("fails")
            .then(s("fail", Some("c"), true))
            .build()
            .unwrap()
            .run(3u32)
            .await
            .is_success()
    );
    let waits = Pipeline::builder("waits")
        .then(StepDef::from_fn(
            "wait",
            StepOptions::DEFAULT,
            |ctx: ExecutionContext, n: u32| async move {
                ctx.set("d", n);
                std::future::pending::<()>().await;
                (ctx, Outcome::success(n))
            },
        ))
        .build()
        .unwrap();
    let cancelled = tokio::time::timeout(Duration::from_millis(5), waits.run(4u32)).await;
    assert!(cancelled.is_err());
    assert!(reads.run(5u32).await.is_success());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "store#1:",
            "after#1:a",
            "read#1:",
            "store#1:",
            "after#1:a",
            "read#1:",
            "store#1:",
            "after#1:a",
            "read#1:",
            "fail#1:",
            "read#1:"
        ]
    );
}

#[tokio::test]
async fn a_success_branch_back_to_a_step_of_the_main_line_passes_the_output() {
    // `b` and `c` follow `->` (each takes the input of the step before), and `c`'s success
    // branch jumps back to `b`: there, `b` takes `c`'s output, as the types were checked
    // when the pipeline was built.
    let steps = vec![
        step("a", |n: u32| Outcome::success(n + 1)),
        step("b", |n: u32| {
            if n >= 10 {
                Outcome::failure(format!("big {n}"))
            } else {
                Outcome::success(n * 10)
            }
        }),
        step("c", |n: u32| Outcome::success(n + 100)),
    ];
    let p = Pipeline::from_pointy_with("a -> b -> c (1 -> b)", steps).unwrap();
    let run = p.run(1u32).await;
    assert_eq!(
        run.status(),
        &RunStatus::Failed {
            step: "b".into(),
            message: "big 101".into()
        },
        "{}",
        run.trace_text()
    );
}

/// A run that is dropped (its caller gave up on it) stops its Tokio steps: they do not
/// run on in the background, as a handler's Tokio attempts do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_run_stops_its_tokio_steps() {
    let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (s, f) = (started.clone(), finished.clone());
    let mut options = StepOptions::DEFAULT;
    options.executor = eventflow::Executor::Tokio;
    let slow = StepDef::from_fn("slow_on_tokio", options, move |ctx, n: u32| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            f.fetch_add(1, Ordering::SeqCst);
            (ctx, Outcome::success(n))
        }
    });
    let pipeline = Pipeline::builder("dropped").then(slow).build().unwrap();
    let given_up = tokio::time::timeout(Duration::from_millis(100), pipeline.run(1u32)).await;
    assert!(
        given_up.is_err(),
        "the run was still going when it was dropped"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the Tokio step had started"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the Tokio step of a dropped run ran to its end"
    );
}
