use eventflow::prelude::*;

#[event_handler("user.created", retyr(max_attempts = 3))]
async fn h(_e: &Envelope) {}

fn main() {}
