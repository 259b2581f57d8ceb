use eventflow::prelude::*;

const ATTEMPTS: u32 = 3;

#[event_handler("user.created", retry = ATTEMPTS)]
async fn h(_e: &Envelope) {}

fn main() {}
