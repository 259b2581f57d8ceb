use eventflow::prelude::*;

#[derive(Clone, Debug)]
struct Order {
    total: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("gateway")]
struct GatewayError;

#[derive(Event, Default)]
#[event(
    executor = ThreadPool,
    executor_config(max_workers = 4, max_tasks_per_child = 50, thread_name_prefix = "payment-"),
    retry(max_attempts = 3, backoff_factor = 0.5, max_backoff = 5.0, retry_on = [GatewayError]),
    evaluation = SuccessOnAllEventsSuccess,
    stop_on_error,
)]
struct ProcessPayment;

impl Process for ProcessPayment {
    type Input = Order;
    type Output = u32;
    async fn process(&self, _ctx: &mut ExecutionContext, order: Order) -> Outcome<u32> {
        if order.total > 1000 {
            return Err(GatewayError.into());
        }
        Outcome::success(order.total)
    }
}

/// One policy for several steps.
const PATIENT: RetryPolicy = RetryPolicy::linear(5, 1.0, 1.0, 10.0);

fn impatient() -> RetryPolicy {
    RetryPolicy::attempts(2)
}

#[event(retry = PATIENT)]
async fn reserve_stock(order: Order) -> Outcome<Order> {
    Outcome::success(order)
}

#[event(retry = impatient)]
async fn notify_warehouse(order: Order) -> Outcome<Order> {
    Outcome::success(order)
}

#[event(retry(max_attempts = 4, backoff_factor = 1.0, backoff_step = 2.0, max_backoff = 10.0))]
async fn ship_order(order: Order) -> Outcome<Order> {
    Outcome::success(order)
}

#[event(retry(max_attempts = 5))]
async fn validate_order(order: Order) -> Outcome<Order> {
    Outcome::success(order)
}

#[event(name = "audit_order")]
fn audit(order: Order, ctx: &mut ExecutionContext) -> Outcome<Order> {
    ctx.set("audited", true);
    Outcome::success(order)
}

fn main() {
    let _ = Pipeline::builder("checkout")
        .step_named("validate_order")
        .step_named("audit_order")
        .step_named("reserve_stock")
        .step_named("notify_warehouse")
        .step_named("ship_order")
        .step::<ProcessPayment>()
        .build();
}
