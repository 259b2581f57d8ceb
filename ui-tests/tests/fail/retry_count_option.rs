use eventflow::prelude::*;

#[event_handler("user.created", retry_count = 3)]
async fn h(_e: &Envelope) {}

fn main() {}
