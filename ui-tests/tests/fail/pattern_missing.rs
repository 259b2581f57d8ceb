use eventflow::prelude::*;

#[event_handler(name = "h")]
async fn h(_e: &Envelope) {}

fn main() {}
