use eventflow::prelude::*;

#[event_handler("")]
async fn h(_e: &Envelope) {}

fn main() {}
