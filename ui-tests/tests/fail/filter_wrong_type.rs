use eventflow::prelude::*;

#[derive(Event, Clone, Serialize, Deserialize)]
#[event(name = "order.created")]
struct OrderCreated;

fn by_envelope(_e: &Envelope) -> bool { true }

#[event_handler("order.created", filter = by_envelope)]
async fn h(_e: OrderCreated) {}

fn main() {}
