use eventflow::prelude::*;

#[event_handler("user.created", timeout = 30)]
async fn h(_e: &Envelope) {}

fn main() {}
