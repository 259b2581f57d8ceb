use eventflow::prelude::*;

#[event_handler("user.created", concurrency = 0)]
async fn h(_e: &Envelope) {}

fn main() {}
