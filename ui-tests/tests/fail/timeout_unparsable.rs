use eventflow::prelude::*;

#[event_handler("user.created", timeout = "5 parsecs")]
async fn h(_e: &Envelope) {}

fn main() {}
