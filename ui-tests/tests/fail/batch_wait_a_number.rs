use eventflow::prelude::*;

#[event_handler("user.created", batch(max_size = 10, max_wait = 50))]
async fn h(_e: &Envelope) {}

fn main() {}
