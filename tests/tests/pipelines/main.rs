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

/// Lets this test binary serve steps of the Process executor in its child processes.
#[test]
fn eventflow_process_worker() {
    eventflow::pipeline::serve_process_steps();
}

mod branching;
mod building;
mod executors;
mod pointy;
mod process;
mod runs;
mod shared_data;
