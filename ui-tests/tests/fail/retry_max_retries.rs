use eventflow::prelude::*;

#[event_handler("user.created", retry(max_retries = 3))]
async fn h(_e: &Envelope) {}

fn main() {}
