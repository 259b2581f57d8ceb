use eventflow::prelude::*;

#[event_handler("user.created", retry = "exponential")]
async fn h(_e: &Envelope) {}

fn main() {}
