//! volnux's e-commerce flow as an eventflow pipeline: validate the order, charge it through
//! a flaky gateway (retried), send the confirmation; a premium order takes a `goto` to a
//! priority fulfilment; a returning customer bypasses the fraud check. Each run prints its
//! trace.
//!
//! Run it with `cargo run --example order_pipeline`.

use std::sync::atomic::{AtomicU32, Ordering};

use eventflow::pipeline::{Bypass, PipelineRun};
use eventflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: u32,
    customer: String,
    total_cents: u64,
    premium: bool,
    returning: bool,
}

#[derive(Clone, Debug)]
struct Receipt {
    order: u32,
    charged_cents: u64,
    priority: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("payment gateway timed out")]
struct GatewayError;

/// A function-based event: checks the order.
#[event(name = "validate_order")]
async fn validate_order(order: Order, ctx: &mut ExecutionContext) -> Outcome<Order> {
    if order.total_cents == 0 {
        return Outcome::failure("the order is empty");
    }
    ctx.set("returning", order.returning);
    Outcome::success(order)
}

/// Skipped for returning customers.
#[derive(Event, Default)]
#[event(name = "fraud_check", pipeline)]
struct FraudCheck;

impl Process for FraudCheck {
    type Input = Order;
    type Output = Order;
    async fn process(&self, _ctx: &mut ExecutionContext, order: Order) -> Outcome<Order> {
        println!("    fraud_check: scoring order {}", order.id);
        Outcome::success(order)
    }
    fn can_bypass(&self, ctx: &ExecutionContext, order: &Order) -> Bypass<Order> {
        match ctx.get::<bool>("returning") {
            // A returning customer's order goes on unchanged.
            Some(true) => Bypass::skip(order.clone(), "returning customer"),
            _ => Bypass::No,
        }
    }
}

static GATEWAY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Charges the card; the gateway times out on every other first call; premium orders go to
/// priority fulfilment with a goto.
#[derive(Event, Default)]
#[event(
    name = "process_payment",
    retry(max_attempts = 3, backoff_factor = 0.05, max_backoff = 1.0, retry_on = [GatewayError]),
    stop_on_exception,
)]
struct ProcessPayment;

impl Process for ProcessPayment {
    type Input = Order;
    type Output = Receipt;
    async fn process(&self, ctx: &mut ExecutionContext, order: Order) -> Outcome<Receipt> {
        if GATEWAY_CALLS
            .fetch_add(1, Ordering::SeqCst)
            .is_multiple_of(2)
        {
            return Err(GatewayError.into());
        }
        let receipt = Receipt {
            order: order.id,
            charged_cents: order.total_cents,
            priority: order.premium,
        };
        if order.premium {
            return ctx.goto(3, true, receipt, "premium customer");
        }
        Outcome::success(receipt)
    }
}

#[event(name = "send_confirmation")]
async fn send_confirmation(receipt: Receipt) -> Outcome<String> {
    Outcome::success(format!(
        "confirmation for order {}: {:.2} charged",
        receipt.order,
        receipt.charged_cents as f64 / 100.0
    ))
}

#[event(name = "priority_fulfilment")]
async fn priority_fulfilment(receipt: Receipt) -> Outcome<String> {
    Outcome::success(format!(
        "order {} shipped first class (priority: {})",
        receipt.order, receipt.priority
    ))
}

#[event(name = "refund")]
async fn refund(order: Order) -> Outcome<String> {
    Outcome::success(format!("order {} refunded", order.id))
}

fn show(label: &str, run: &PipelineRun) {
    println!("\n== {label}: {:?}", run.status());
    if let Some(out) = run.output::<String>() {
        println!("   result: {out}");
    }
    print!("{}", run.trace_text());
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = Pipeline::from_pointy(
        "# the checkout of volnux's tutorial
         @name:checkout
         @recursive-depth:20
         validate_order |-> fraud_check
           |-> process_payment (0 -> refund, 1 -> send_confirmation, 3 -> priority_fulfilment)",
    )?;
    println!("{}", pipeline.to_dot());

    let order = |id, premium, returning| Order {
        id,
        customer: "ada".into(),
        total_cents: 4_200,
        premium,
        returning,
    };
    show(
        "a new customer",
        &pipeline.run(order(1, false, false)).await,
    );
    show(
        "a premium customer (goto)",
        &pipeline.run(order(2, true, false)).await,
    );
    show(
        "a returning customer (bypass)",
        &pipeline.run(order(3, false, true)).await,
    );
    show(
        "an empty order",
        &pipeline
            .run(Order {
                total_cents: 0,
                ..order(4, false, false)
            })
            .await,
    );
    Ok(())
}
