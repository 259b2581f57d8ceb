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
