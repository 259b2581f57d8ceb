//! Building pipelines and what a run does with their steps: types, retries, evaluation states, stop conditions.

use super::*;

#[tokio::test]
async fn registered_events_run_by_type_and_by_name_with_results_flowing() {
    let pipeline = Pipeline::builder("checkout")
        .step_named("validate_order")
        .step::<ChargeCard>()
        .then(step("receipt_text", |r: Receipt| {
            Outcome::success(format!("order {} charged {}", r.order, r.charged))
        }))
        .build()
        .unwrap();
    let run = pipeline.run(order(1)).await;
    assert!(run.is_success(), "{}", run.trace_text());
    assert_eq!(run.output::<String>().unwrap(), "order 1 charged 40");

    let empty = pipeline
        .run(Order {
            total: 0,
            ..order(2)
        })
        .await;
    assert_eq!(
        *empty.status(),
        RunStatus::Failed {
            step: "validate_order".into(),
            message: "empty order".into()
        }
    );
}

#[tokio::test]
async fn steps_whose_types_do_not_line_up_are_refused_when_built() {
    let err = Pipeline::builder("bad")
        .step::<ChargeCard>()
        .step_named("validate_order")
        .build()
        .err()
        .unwrap();
    let PipelineError::TypeMismatch { from, to, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (from.as_str(), to.as_str()),
        ("charge_card", "validate_order")
    );
    assert!(err.to_string().contains("Order"), "{err}");
    let err = Pipeline::builder("bad")
        .step_named("no_such_step")
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unknown step `no_such_step`"),
        "{err}"
    );
}

#[tokio::test]
async fn retry_follows_the_policy_and_only_for_the_listed_errors() {
    GATEWAY_CALLS.store(0, Ordering::SeqCst);
    let pipeline = Pipeline::builder("pay")
        .step::<ChargeCard>()
        .build()
        .unwrap();
    let run = pipeline.run(order(7)).await;
    assert!(run.is_success(), "{}", run.trace_text());
    let delays: Vec<Duration> = run
        .trace()
        .iter()
        .filter_map(|(_, s)| match s {
            Signal::StepRetried { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    // backoff_factor * 2^(n-1): 10ms, then 20ms.
    assert_eq!(
        delays,
        [Duration::from_millis(10), Duration::from_millis(20)]
    );

    // `Declined` is not in retry_on: one attempt, and stop_on_exception stops the run.
    let run = pipeline.run(order(66)).await;
    let attempts = run
        .trace()
        .iter()
        .filter(|(_, s)| matches!(s, Signal::StepStarted { .. }))
        .count();
    assert_eq!(attempts, 1);
    assert_eq!(
        *run.status(),
        RunStatus::Stopped {
            step: "charge_card".into(),
            reason: StopReason::Exception
        }
    );
}

/// Three tasks: the first succeeds, the second fails, the third succeeds after a while.
fn mixed_group(evaluation: EvaluationState, finished: Arc<AtomicU32>) -> Pipeline {
    let slow = StepDef::from_fn("slow_ok", StepOptions::DEFAULT, move |ctx, n: u32| {
        let finished = finished.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            (ctx, Outcome::success(n + 2))
        }
    });
    Pipeline::builder("mixed")
        .parallel(vec![
            step("ok", |n: u32| Outcome::success(n)),
            step("fails", |_n: u32| Outcome::<u32>::failure("no")),
            slow,
        ])
        .configure(move |o| o.evaluation = evaluation)
        .build()
        .unwrap()
}

#[tokio::test]
async fn evaluation_states_decide_the_same_mixed_group() {
    for (state, expected, slow_finishes) in [
        (EvaluationState::SuccessOnAllEventsSuccess, false, true),
        (EvaluationState::FailureForPartialError, false, false),
        (EvaluationState::SuccessForPartialSuccess, true, true),
        (EvaluationState::FailureForAllEventsFailure, true, true),
    ] {
        let finished = Arc::new(AtomicU32::new(0));
        let run = mixed_group(state, finished.clone()).run(1u32).await;
        assert_eq!(
            run.is_success(),
            expected,
            "{state:?}: {}",
            run.trace_text()
        );
        // FailureForPartialError fails at the first failure and cancels the slow task.
        assert_eq!(
            finished.load(Ordering::SeqCst) == 1,
            slow_finishes,
            "{state:?}"
        );
        if expected {
            let mut outs = run.output::<TaskOutputs>().unwrap().take::<u32>();
            outs.sort_unstable();
            assert_eq!(outs, [1, 3]);
        }
    }
    // All failed: even FailureForAllEventsFailure fails.
    let all_fail = Pipeline::builder("all-fail")
        .parallel(vec![
            step("a", |_n: u32| Outcome::<u32>::failure("a")),
            step("b", |_n: u32| Outcome::<u32>::failure("b")),
        ])
        .configure(|o| o.evaluation = EvaluationState::FailureForAllEventsFailure)
        .build()
        .unwrap();
    assert!(!all_fail.run(1u32).await.is_success());
}

#[tokio::test]
async fn for_each_runs_one_task_per_item_and_zero_tasks_are_defined() {
    let doubled = Pipeline::builder("each")
        .for_each(step("double", |n: u32| Outcome::success(n * 2)))
        .build()
        .unwrap();
    let run = doubled.run(ForEachInput::new(vec![1u32, 2, 3])).await;
    let mut out = run.output::<TaskOutputs>().unwrap().take::<u32>();
    out.sort_unstable();
    assert_eq!(out, [2, 4, 6]);
    for (state, expected) in [
        (EvaluationState::SuccessOnAllEventsSuccess, true),
        (EvaluationState::FailureForPartialError, true),
        (EvaluationState::SuccessForPartialSuccess, false),
        (EvaluationState::FailureForAllEventsFailure, true),
    ] {
        let p = Pipeline::builder("none")
            .for_each(step("double", |n: u32| Outcome::success(n * 2)))
            .configure(move |o| o.evaluation = state)
            .build()
            .unwrap();
        let run = p.run(ForEachInput::new(Vec::<u32>::new())).await;
        assert_eq!(run.is_success(), expected, "{state:?} with zero tasks");
    }
}

#[tokio::test]
async fn stop_conditions_end_the_run_and_say_why() {
    let never = Arc::new(AtomicU32::new(0));
    let n2 = never.clone();
    let after = move || {
        let n2 = n2.clone();
        step("after", move |x: u32| {
            n2.fetch_add(1, Ordering::SeqCst);
            Outcome::success(x)
        })
    };
    type Case = (StepDef, fn(&mut StepOptions), StopReason);
    let cases: Vec<Case> = vec![
        (
            step("ok", |x: u32| Outcome::success(x)),
            |o| o.stop_on_success = true,
            StopReason::Success,
        ),
        (
            step("fails", |_x: u32| Outcome::<u32>::failure("bad")),
            |o| o.stop_on_error = true,
            StopReason::Error,
        ),
        (
            step("raises", |_x: u32| {
                Err::<eventflow::pipeline::Done<u32>, _>(HandlerError::msg("boom"))
            }),
            |o| o.stop_on_exception = true,
            StopReason::Exception,
        ),
    ];
    for (first, set, reason) in cases {
        let name = first.name().to_owned();
        let p = Pipeline::builder("stops")
            .then(first)
            .configure(set)
            .then(after())
            .build()
            .unwrap();
        let run = p.run(1u32).await;
        assert_eq!(*run.status(), RunStatus::Stopped { step: name, reason });
    }
    assert_eq!(never.load(Ordering::SeqCst), 0, "no step ran after a stop");
}
