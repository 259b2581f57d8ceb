use eventflow::prelude::*;

#[event_handler("user.created", executor = Threadpool)]
fn h(_e: &Envelope) {}

fn main() {}
