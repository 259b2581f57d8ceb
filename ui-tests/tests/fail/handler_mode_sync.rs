use eventflow::prelude::*;

#[event_handler("user.created", mode = "sync")]
async fn h(_e: &Envelope) {}

fn main() {}
