use eventflow::prelude::*;

#[event_handler("user.created", queue = "emails")]
async fn h(_e: &Envelope) {}

fn main() {}
