use eventflow::prelude::*;

#[event_handler("user.created", timeout = "1s", timeout = "2s")]
async fn h(_e: &Envelope) {}

fn main() {}
