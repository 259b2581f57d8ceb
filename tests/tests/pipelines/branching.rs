//! Branches, goto and bypass.

use super::*;

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
    fn can_bypass(&self, ctx: &ExecutionContext, _order: &Order) -> Bypass<Order> {
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

static REFUNDED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[event(name = "refund_order")]
async fn refund_order(order: Order) -> Outcome<Order> {
    REFUNDED
        .lock()
        .unwrap()
        .push(format!("refund {}", order.id));
    Outcome::success(order)
}

#[derive(Event, Default)]
#[event(name = "restock_order", pipeline)]
struct RestockOrder;

impl Process for RestockOrder {
    type Input = Order;
    type Output = Order;
    async fn process(&self, _ctx: &mut ExecutionContext, order: Order) -> Outcome<Order> {
        REFUNDED
            .lock()
            .unwrap()
            .push(format!("restock {}", order.id));
        Outcome::success(order)
    }
}

#[tokio::test]
async fn branches_and_chains_take_registered_steps_by_name_and_by_type() {
    // `validate_order` fails an empty order; its failure branch gets that order.
    let by_name = Pipeline::builder("refund_by_name")
        .then_named("validate_order")
        .on_failure_named("refund_order")
        .build()
        .unwrap();
    let by_type = Pipeline::builder("refund_by_type")
        .then_named("validate_order")
        .on_failure_step::<RestockOrder>()
        .build()
        .unwrap();
    let empty = Order {
        total: 0,
        ..order(31)
    };
    by_name.run(empty.clone()).await;
    by_type.run(Order { id: 32, ..empty }).await;
    assert_eq!(*REFUNDED.lock().unwrap(), ["refund 31", "restock 32"]);
    // The same names in parallel and for-each groups; an unknown name fails the build.
    let err = Pipeline::builder("unknown")
        .then_named("validate_order")
        .on_failure_named("no_such_step")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no_such_step"), "{err}");
    assert!(
        Pipeline::builder("group")
            .parallel_named(&["refund_order", "restock_order"])
            .build()
            .is_ok()
    );
}

/// A step that sends every order to its branch 3 with `success = false` and no reason.
fn failing_goto() -> StepDef {
    StepDef::from_fn(
        "check_stock",
        StepOptions::DEFAULT,
        |mut ctx, o: Order| async move {
            let out: Outcome<Order> = ctx.goto(3, false, o, "");
            (ctx, out)
        },
    )
}

#[tokio::test]
async fn a_goto_with_success_false_counts_as_the_step_failing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let backorder = step("backorder", move |o: Order| {
        s.lock().unwrap().push(o.id);
        Outcome::success(o)
    });
    let p = Pipeline::from_pointy_with(
        "check_stock (3 -> backorder)",
        vec![failing_goto(), backorder.clone()],
    )
    .unwrap();
    let run = p.run(order(41)).await;
    // The branch ran, and the run failed naming the step; the reason defaulted.
    assert_eq!(*seen.lock().unwrap(), [41]);
    assert_eq!(
        *run.status(),
        RunStatus::Failed {
            step: "check_stock".into(),
            message: "goto 3: manual".into()
        }
    );
    assert!(run.trace().iter().any(|(_, s)| matches!(s,
        Signal::Goto { descriptor: 3, reason, .. } if reason == "manual")));
    assert!(run.trace().iter().any(|(_, s)| matches!(s,
        Signal::StepFinished { step, status: StepStatus::Failed(m), .. }
            if &**step == "check_stock" && m == "goto 3: manual")));

    // With stop_on_error, the failing goto stops the run before its branch.
    let stopping = Pipeline::builder("stops")
        .then(failing_goto())
        .configure(|o| o.stop_on_error = true)
        .branch(3, backorder)
        .build()
        .unwrap();
    let run = stopping.run(order(42)).await;
    assert_eq!(
        *run.status(),
        RunStatus::Stopped {
            step: "check_stock".into(),
            reason: StopReason::Error
        }
    );
    assert_eq!(*seen.lock().unwrap(), [41], "the branch did not run");
}

#[derive(Event, Default)]
#[event(name = "apply_discount", pipeline)]
struct ApplyDiscount;

impl Process for ApplyDiscount {
    type Input = Order;
    type Output = Order;
    async fn process(&self, _ctx: &mut ExecutionContext, order: Order) -> Outcome<Order> {
        Outcome::success(Order {
            total: order.total / 2,
            ..order
        })
    }
    fn can_bypass(&self, _ctx: &ExecutionContext, order: &Order) -> Bypass<Order> {
        if order.premium {
            Bypass::No
        } else {
            Bypass::skip(order.clone(), "no discount for this customer")
        }
    }
}

#[tokio::test]
async fn can_bypass_sees_the_input_and_passes_it_on() {
    let p = Pipeline::builder("discounts")
        .step::<ApplyDiscount>()
        .build()
        .unwrap();
    let plain = p.run(order(43)).await;
    assert_eq!(plain.output::<Order>().unwrap(), order(43));
    assert!(
        plain
            .trace()
            .iter()
            .any(|(_, s)| matches!(s, Signal::StepBypassed { .. }))
    );
    let premium = p
        .run(Order {
            premium: true,
            ..order(44)
        })
        .await;
    assert_eq!(premium.output::<Order>().unwrap().total, 20);
}
