use eventflow::prelude::*;

#[event_handler("user.created", retry(max_attempts = 0))]
async fn h(_e: &Envelope) {}

fn main() {}
