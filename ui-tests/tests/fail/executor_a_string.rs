use eventflow::prelude::*;

#[event_handler("user.created", executor = "ThreadPool")]
async fn h(_e: &Envelope) {}

fn main() {}
