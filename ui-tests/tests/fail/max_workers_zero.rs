use eventflow::prelude::*;

#[event_handler("user.created", executor = ThreadPool, executor_config(max_workers = 0))]
fn h(_e: &Envelope) {}

fn main() {}
