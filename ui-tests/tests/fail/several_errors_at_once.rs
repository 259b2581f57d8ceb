use eventflow::prelude::*;

#[event_handler("user..created", retry(max_attempts = 0), timeout = "soon")]
async fn h<T>(_e: &Envelope) -> i32 { 1 }

fn main() {}
