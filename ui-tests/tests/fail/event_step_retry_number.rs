use eventflow::prelude::*;

#[derive(Clone, Serialize, Deserialize)]
struct Order;

#[event(retry = 3)]
async fn validate(order: Order) -> Outcome<Order> {
    Outcome::success(order)
}

fn main() {}
