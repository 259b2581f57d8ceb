use eventflow::prelude::*;

fn make_pool() -> usize {
    4
}

#[event_handler("user.created", executor = custom(make_pool))]
async fn h(_e: &Envelope) {}

fn main() {}
