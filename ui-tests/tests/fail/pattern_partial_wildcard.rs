use eventflow::prelude::*;

#[event_handler("user.*x")]
async fn h(_e: &Envelope) {}

fn main() {}
