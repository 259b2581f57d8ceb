use eventflow::prelude::*;

#[event_handler("user.created", retry(backoff_factor = -1.0))]
async fn h(_e: &Envelope) {}

fn main() {}
