use eventflow::prelude::*;

#[event_handler("user.created", retry(max_backoff = "forever"))]
async fn h(_e: &Envelope) {}

fn main() {}
