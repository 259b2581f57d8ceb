use eventflow::prelude::*;

#[event_handler("user.created", retry(max_attempts = 4, interval_step = 1.0, interval_max = 10.0))]
async fn h(_e: &Envelope) {}

fn main() {}
