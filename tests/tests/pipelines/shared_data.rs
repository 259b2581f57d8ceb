//! Declared gotos, values shared between steps, attempts and traces.

use super::*;

#[tokio::test]
async fn goto_descriptors_a_step_declares_are_checked_when_the_pipeline_is_built() {
    let steps = || {
        vec![
            step("standard", |o: Order| Outcome::success(o)),
            step("premium", |o: Order| Outcome::success(o)),
        ]
    };
    let err = Pipeline::from_pointy_with("route_order (0 -> standard, 1 -> standard)", steps())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("step `route_order` may goto 3, but the pipeline has no branch 3"),
        "{err}"
    );
    let err = Pipeline::from_pointy_with("route_order (3 -> premium, 7 -> standard)", steps())
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("branch 7 of step `route_order` is never taken"),
        "{err}"
    );
}

/// A step of the shared-values test: stores `key` (when given) and records its context's
/// step name and attempt and the keys it saw.
pub(super) fn sharing(
    name: &'static str,
    key: Option<&'static str>,
    seen: Arc<Mutex<Vec<String>>>,
    fails: bool,
) -> StepDef {
    StepDef::from_fn(
        name,
        StepOptions::DEFAULT,
        move |ctx: ExecutionContext, n: u32| {
            let seen = seen.clone();
            async move {
                let keys = ["a", "b", "c", "d"]
                    .iter()
                    .filter(|k| ctx.get::<u32>(k).is_some())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("");
                // The context names the step it is given to, and the attempt.
                seen.lock()
                    .unwrap()
                    .push(format!("{}#{}:{keys}", ctx.step(), ctx.attempt()));
                if let Some(k) = key {
                    ctx.set(k, n);
                }
                let out = if fails {
                    Outcome::failure("no")
                } else {
                    Outcome::success(n)
                };
                (ctx, out)
            }
        },
    )
}

#[tokio::test]
async fn values_stored_by_any_step_reach_every_later_step() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = |name, key, fails| sharing(name, key, seen.clone(), fails);
    // The run's first value is stored by a step that then fails: its failure branch sees it.
    let p = Pipeline::builder("rescue")
        .then(s("failing", Some("a"), true))
        .on_failure(s("rescue", None, false))
        .build()
        .unwrap();
    assert!(p.run(5u32).await.is_success());
    assert_eq!(*seen.lock().unwrap(), ["failing#1:", "rescue#1:a"]);
    seen.lock().unwrap().clear();

    // A parallel group's tasks see what came before and store more; the step after the
    // group sees it all.
    let seen2 = seen.clone();
    let last = StepDef::from_fn(
        "last",
        StepOptions::DEFAULT,
        move |ctx: ExecutionContext, outs: TaskOutputs| {
            let seen = seen2.clone();
            async move {
                let keys: String = ["a", "b", "c", "d"]
                    .iter()
                    .filter(|k| ctx.get::<u32>(k).is_some())
                    .copied()
                    .collect();
                seen.lock().unwrap().push(format!("last:{keys}"));
                (ctx, Outcome::success(outs.len() as u32))
            }
        },
    );
    let p = Pipeline::builder("group")
        .then(s("first", Some("a"), false))
        .parallel(vec![
            s("left", Some("c"), false),
            s("right", Some("d"), false),
        ])
        .then(last)
        .build()
        .unwrap();
    let run = p.run(5u32).await;
    assert_eq!(run.output::<u32>(), Some(2), "{}", run.trace_text());
    let seen = seen.lock().unwrap().clone();
    // The group's tasks run at once: each sees `a`, and one may see what the other stored.
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!((&*seen[0], &*seen[3]), ("first#1:", "last:acd"), "{seen:?}");
    let mut group = seen[1..3].to_vec();
    group.sort();
    assert!(
        group == ["left#1:a", "right#1:ac"] || group == ["left#1:ad", "right#1:a"],
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_retried_step_sees_its_attempt_and_the_values_of_the_failed_attempt() {
    let flaky = StepDef::from_fn(
        "flaky",
        StepOptions {
            retry: eventflow::RetryPolicy::attempts(3).backoff(0.0, 0.0),
            ..StepOptions::DEFAULT
        },
        |ctx: ExecutionContext, n: u32| async move {
            let before = ctx.get::<u32>("tries").unwrap_or(0);
            ctx.set("tries", before + 1);
            let out = if ctx.attempt() < 3 {
                Err(GatewayError.into())
            } else {
                Outcome::success(format!("{}#{} after {before}", ctx.step(), ctx.attempt()))
            };
            let _ = n;
            (ctx, out)
        },
    );
    let run = run_alone("flaky", flaky, 1u32).await;
    assert_eq!(
        run.output::<String>().as_deref(),
        Some("flaky#3 after 2"),
        "{}",
        run.trace_text()
    );
}

/// The signals of a run without their times.
fn signals(run: &eventflow::pipeline::PipelineRun) -> Vec<Signal> {
    run.trace()
        .iter()
        .map(|(_, s)| match s {
            Signal::StepFinished {
                step,
                status,
                tasks,
                ..
            } => Signal::StepFinished {
                step: step.clone(),
                status: status.clone(),
                tasks: *tasks,
                took: Duration::ZERO,
            },
            other => other.clone(),
        })
        .collect()
}

#[tokio::test]
async fn the_trace_is_the_same_with_or_without_an_observer() {
    let build = |observer: Option<Arc<Mutex<Vec<Signal>>>>| {
        let mut b = Pipeline::builder("same")
            .then(step("one", |n: u32| Outcome::success(n + 1)))
            .then(step("two", |n: u32| {
                if n > 1 {
                    Outcome::failure("too big")
                } else {
                    Outcome::success(n)
                }
            }))
            .on_failure(step("undo", |n: u32| Outcome::success(n * 10)));
        if let Some(seen) = observer {
            b = b.observer(move |s: &Signal| seen.lock().unwrap().push(s.clone()));
        }
        b.build().unwrap()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let quiet = build(None).run(1u32).await;
    let watched = build(Some(seen.clone())).run(1u32).await;
    assert_eq!(quiet.output::<u32>(), Some(20), "{}", quiet.trace_text());
    let expected = signals(&watched);
    assert_eq!(signals(&quiet), expected);
    let names: Vec<String> = expected
        .iter()
        .map(|s| match s {
            Signal::StepStarted { step, attempt } => format!("start {step} #{attempt}"),
            Signal::StepFinished { step, status, .. } => format!("end {step} {status:?}"),
            Signal::PipelineStarted { .. } => "begin".into(),
            Signal::PipelineFinished { .. } => "done".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "begin",
            "start one #1",
            "end one Succeeded",
            "start two #1",
            "end two Failed(\"too big\")",
            "start undo #1",
            "end undo Succeeded",
            "done"
        ]
    );
    // Times never go backwards, and each step ends after it starts.
    let times: Vec<Duration> = quiet.trace().iter().map(|(at, _)| *at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // The observer saw each signal as it happened: the same list.
    let mut live = seen.lock().unwrap().clone();
    for s in &mut live {
        if let Signal::StepFinished { took, .. } = s {
            *took = Duration::ZERO;
        }
    }
    assert_eq!(live, expected);
}

#[repr(align(64))]
#[derive(Clone, Copy)]
struct Aligned([u8; 64]);

#[tokio::test]
async fn steps_with_large_or_over_aligned_futures_run_like_any_other() {
    // A step whose future holds 4 KiB across an await, and one that holds a value aligned
    // to 64 bytes: neither fits where a run keeps small step futures.
    let big = StepDef::from_fn(
        "big",
        StepOptions::DEFAULT,
        |ctx: ExecutionContext, n: u32| async move {
            let buf = [n as u8; 4096];
            tokio::task::yield_now().await;
            let sum: u32 = buf.iter().map(|b| u32::from(*b)).sum();
            (ctx, Outcome::success(sum))
        },
    );
    let aligned = StepDef::from_fn(
        "aligned",
        StepOptions::DEFAULT,
        |ctx: ExecutionContext, n: u32| async move {
            let a = Aligned([1; 64]);
            tokio::task::yield_now().await;
            let at = std::ptr::addr_of!(a) as usize;
            (ctx, Outcome::success((at % 64, n + u32::from(a.0[63]))))
        },
    );
    // And a small one that waits twice: it is polled where the run keeps it.
    let small = StepDef::from_fn(
        "small",
        StepOptions::DEFAULT,
        |ctx: ExecutionContext, (at, n): (usize, u32)| async move {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let out = format!("{}: {at} {n}", ctx.step());
            (ctx, Outcome::success(out))
        },
    );
    let run = Pipeline::builder("sizes")
        .then(big)
        .then(aligned)
        .then(small)
        .build()
        .unwrap()
        .run(2u32)
        .await;
    assert_eq!(
        run.output::<String>().as_deref(),
        Some("small: 0 8193"),
        "{}",
        run.trace_text()
    );
}
