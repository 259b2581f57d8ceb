use eventflow::prelude::*;

#[event_handler("user.created", executor_config(max_workers = 2))]
async fn h(_e: &Envelope) {}

fn main() {}
