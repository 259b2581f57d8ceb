use eventflow::prelude::*;

#[event_handler("user.created", priority = "high")]
async fn h(_e: &Envelope) {}

fn main() {}
