use eventflow::prelude::*;

#[event_handler("user.created", retry(interval_start = 1.0))]
async fn h(_e: &Envelope) {}

fn main() {}
