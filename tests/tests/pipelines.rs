//! Pipelines: class- and function-based events, results flow, retry, evaluation states,
//! stop conditions, goto, bypass, branches, Pointy text, signals and executors.
#![allow(clippy::unwrap_used)] // test code

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventflow::pipeline::{
    Bypass, EvaluationState, ExecutionContext, ForEachInput, Outcome, OutcomeExt, Pipeline,
    PipelineError, Process, RunStatus, Signal, StepDef, StepOptions, StepStatus, StopReason,
    TaskOutputs,
};
use eventflow::prelude::*;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    total: u32,
    premium: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Receipt {
    order: u32,
    charged: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("gateway timeout")]
struct GatewayError;

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct Declined;

#[event(name = "validate_order")]
async fn validate_order(order: Order) -> Outcome<Order> {
    if order.total == 0 {
        return Outcome::failure("empty order");
    }
    Outcome::success(order)
}

static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(Event, Default)]
#[event(
    name = "charge_card",
    retry(max_attempts = 3, backoff_factor = 0.01, max_backoff = 1.0, retry_on = [GatewayError]),
    stop_on_exception
)]
struct ChargeCard;

impl Process for ChargeCard {
    type Input = Order;
    type Output = Receipt;
    async fn process(&self, ctx: &mut ExecutionContext, order: Order) -> Outcome<Receipt> {
        let call = GATEWAY_CALLS.fetch_add(1, Ordering::SeqCst);
        if order.id == 66 {
            return Err(Declined.into());
        }
        if order.id == 7 && call % 3 < 2 {
            return Err(GatewayError.into());
        }
        ctx.set("charged", order.total);
        Outcome::success(Receipt {
            order: order.id,
            charged: order.total,
        })
    }
}

fn step<I, O>(name: &str, f: impl Fn(I) -> Outcome<O> + Send + Sync + 'static) -> StepDef
where
    I: Clone + Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    let f = Arc::new(f);
    StepDef::from_fn(
        name,
        StepOptions::DEFAULT,
        move |ctx: ExecutionContext, i: I| {
            let f = f.clone();
            async move { (ctx, f(i)) }
        },
    )
}

/// Runs a pipeline of `step` alone on `input`.
async fn run_alone<T: std::any::Any + Send + Sync>(
    name: &str,
    step: StepDef,
    input: T,
) -> eventflow::pipeline::PipelineRun {
    Pipeline::builder(name)
        .then(step)
        .build()
        .unwrap()
        .run(input)
        .await
}

fn order(id: u32) -> Order {
    Order {
        id,
        total: 40,
        premium: false,
    }
}

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

#[derive(Event, Default)]
#[event(name = "route_order", goto = [3])]
struct RouteOrder;

impl Process for RouteOrder {
    type Input = Order;
    type Output = Order;
    async fn process(&self, ctx: &mut ExecutionContext, order: Order) -> Outcome<Order> {
        if order.premium {
            let upgraded = Order {
                total: order.total / 2,
                ..order
            };
            return ctx.goto(3, true, upgraded, "premium customer");
        }
        if order.id == 99 {
            return ctx.goto(9, true, order, "");
        }
        Outcome::success(order)
    }
}

#[tokio::test]
async fn goto_moves_to_the_branch_with_the_result_and_the_reason() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let p = Pipeline::from_pointy_with(
        "route_order (0 -> standard, 1 -> standard, 3 -> premium)",
        vec![
            step("standard", move |o: Order| {
                s1.lock().unwrap().push(format!("standard {}", o.total));
                Outcome::success(o)
            }),
            step("premium", move |o: Order| {
                s2.lock().unwrap().push(format!("premium {}", o.total));
                Outcome::success(o)
            }),
        ],
    )
    .unwrap();
    let run = p
        .run(Order {
            premium: true,
            ..order(5)
        })
        .await;
    assert!(run.is_success());
    assert_eq!(*seen.lock().unwrap(), ["premium 20"]);
    assert!(run.trace().iter().any(|(_, s)| matches!(s,
        Signal::Goto { from, descriptor: 3, to, reason } if &**from == "route_order" && &**to == "premium" && reason == "premium customer")));
    p.run(order(6)).await;
    assert_eq!(seen.lock().unwrap().last().unwrap(), "standard 40");

    // A descriptor the step has no branch for fails the run, naming it; the reason
    // defaults to "manual".
    let run = p.run(order(99)).await;
    let RunStatus::Failed { message, .. } = run.status() else {
        panic!("{:?}", run.status());
    };
    assert!(message.contains("goto 9"), "{message}");
}

#[tokio::test]
async fn a_goto_loop_is_bounded_by_the_step_limit() {
    let again = StepDef::from_fn(
        "again",
        StepOptions::DEFAULT,
        |mut ctx, n: u32| async move {
            let out: Outcome<u32> = ctx.goto(2, true, n + 1, "loop");
            (ctx, out)
        },
    );
    let p =
        Pipeline::from_pointy_with("@recursive-depth:5\nagain (2 -> again)", vec![again]).unwrap();
    let run = p.run(0u32).await;
    let RunStatus::Failed { message, .. } = run.status() else {
        panic!("{:?}", run.status());
    };
    assert!(message.contains("limit of 5 steps"), "{message}");
}

#[derive(Event, Default)]
#[event(name = "verify_identity", pipeline)]
struct VerifyIdentity;

impl Process for VerifyIdentity {
    type Input = Order;
    type Output = Order;
    async fn process(&self, _ctx: &mut ExecutionContext, _order: Order) -> Outcome<Order> {
        Outcome::failure("identity check is down")
    }
    fn can_bypass(&self, ctx: &ExecutionContext) -> Bypass {
        match ctx.get::<bool>("trusted") {
            Some(true) => Bypass::skip(
                Order {
                    id: 0,
                    total: 1,
                    premium: true,
                },
                "trusted customer",
            ),
            _ => Bypass::No,
        }
    }
}

#[tokio::test]
async fn bypass_skips_the_step_and_passes_its_data_on() {
    let mark = StepDef::from_fn(
        "mark_trusted",
        StepOptions::DEFAULT,
        |ctx: ExecutionContext, o: Order| async move {
            ctx.set("trusted", o.premium);
            (ctx, Outcome::success(o))
        },
    );
    let p = Pipeline::builder("kyc")
        .then(mark)
        .step::<VerifyIdentity>()
        .build()
        .unwrap();
    let run = p
        .run(Order {
            premium: true,
            ..order(3)
        })
        .await;
    assert!(run.is_success(), "{}", run.trace_text());
    assert_eq!(
        run.output::<Order>().unwrap().id,
        0,
        "the bypass data went on"
    );
    assert!(run.trace().iter().any(|(_, s)| matches!(s,
        Signal::StepBypassed { step, reason } if &**step == "verify_identity" && reason == "trusted customer")));
    assert!(
        !p.run(order(3)).await.is_success(),
        "not trusted: the step runs"
    );
}

#[tokio::test]
async fn a_failure_branch_gets_the_failed_steps_input() {
    let refunded = Arc::new(Mutex::new(None));
    let fails = Pipeline::builder("fail-branch")
        .then(step("charge", |_o: Order| {
            Outcome::<Receipt>::failure("declined")
        }))
        .on_failure(step("refund", {
            let r = refunded.clone();
            move |o: Order| {
                *r.lock().unwrap() = Some(o.id);
                Outcome::success(o)
            }
        }))
        .build()
        .unwrap();
    let run = fails.run(order(12)).await;
    assert!(run.is_success(), "{}", run.trace_text());
    assert_eq!(*refunded.lock().unwrap(), Some(12));
}

#[tokio::test]
async fn pointy_text_parses_validates_and_draws() {
    let steps = || {
        vec![
            step("a", |n: u32| Outcome::success(n + 1)),
            step("b", |n: u32| Outcome::success(n * 10)),
            step("c", |n: u32| Outcome::success(n + 100)),
            step("fails", |_n: u32| Outcome::<u32>::failure("no")),
        ]
    };
    let p = Pipeline::from_pointy_with(
        "# numbers\n@recursive-depth:10\na |-> b |-> c   # piped\n",
        steps(),
    )
    .unwrap();
    assert_eq!(p.run(1u32).await.output::<u32>(), Some(120));
    // `->` passes the step's input on, `|->` its output.
    let p = Pipeline::from_pointy_with("a -> b", steps()).unwrap();
    assert_eq!(p.run(1u32).await.output::<u32>(), Some(10));
    // `* 3` and branches by descriptor.
    let p = Pipeline::from_pointy_with("fails * 3 (0 -> a |-> b, 1 -> c)", steps()).unwrap();
    let run = p.run(1u32).await;
    assert_eq!(run.output::<u32>(), Some(20));
    let dot = p.to_dot();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(
        dot.contains("label=\"0 (failure)\"") && dot.contains("label=\"1 (success)\""),
        "{dot}"
    );

    let err = Pipeline::from_pointy_with("a |-> b\n  |-> nope", steps())
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "unknown step `nope` at line 2, column 7");
    let err = Pipeline::from_pointy_with("a |-> (b)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("line 1, column 7"), "{err}");
    let err = Pipeline::from_pointy_with("a (0 b)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("expected `->`"), "{err}");
    let err = Pipeline::from_pointy_with("a || b (1 -> c)", steps())
        .err()
        .unwrap();
    assert!(err.to_string().contains("parallel group"), "{err}");
}

/// Branches nested far past the limit (20 KB of `a (0 -> `) are refused with a position,
/// on a Tokio worker thread's small stack, instead of overflowing it; every Pointy error
/// says where it is, a type mismatch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_pointy_is_refused_with_a_position_not_a_stack_overflow() {
    let text = format!("{}a{}", "a (0 -> ".repeat(2500), ")".repeat(2500));
    let err = tokio::spawn(async move {
        let steps = vec![step("a", |n: u32| Outcome::success(n))];
        Pipeline::from_pointy_with(&text, steps)
            .err()
            .map(|e| e.to_string())
    })
    .await
    .expect("parsing ran on a worker thread without crashing");
    let err = err.expect("refused");
    assert!(
        err.contains("nest more than 64 levels") && err.contains("line 1, column 515"),
        "{err}"
    );
    // At the limit it still parses and runs.
    let ok = format!("{}a{}", "a (0 -> ".repeat(64), ")".repeat(64));
    let steps = vec![step("a", |n: u32| Outcome::success(n))];
    let p = Pipeline::from_pointy_with(&ok, steps).expect("64 levels parse");
    assert!(p.run(1u32).await.is_success());

    let steps = vec![
        step("a", |n: u32| Outcome::success(n)),
        step("named", |n: u32| Outcome::success(format!("{n}"))),
    ];
    let err = Pipeline::from_pointy_with("a\n  |-> named |-> a", steps)
        .err()
        .unwrap();
    assert!(matches!(err, PipelineError::TypeMismatch { .. }), "{err}");
    assert!(err.to_string().ends_with("at line 2, column 17"), "{err}");
}

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

/// Lets this test binary serve steps of the Process executor in its child processes.
#[test]
fn eventflow_process_worker() {
    eventflow::pipeline::serve_process_steps();
}

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
fn sharing(
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
