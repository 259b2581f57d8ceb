use eventflow::prelude::*;

#[event_handler("user.created", retry = true)]
async fn h(_e: &Envelope) {}

fn main() {}
