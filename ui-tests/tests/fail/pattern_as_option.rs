use eventflow::prelude::*;

#[event_handler("user.created", pattern = "user.*")]
async fn h(_e: &Envelope) {}

fn main() {}
