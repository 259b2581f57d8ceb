use eventflow::prelude::*;

#[event_handler("user.created", executor = Tokio)]
fn h(_e: &Envelope) {}

fn main() {}
