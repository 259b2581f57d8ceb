use eventflow::prelude::*;

#[event_handler("user.created")]
async fn h<T: Send>(_e: &Envelope) {}

fn main() {}
