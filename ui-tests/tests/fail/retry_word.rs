use eventflow::prelude::*;

#[event_handler("user.created", retry)]
async fn h(_e: &Envelope) {}

fn main() {}
