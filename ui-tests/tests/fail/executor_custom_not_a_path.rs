use eventflow::prelude::*;

#[event_handler("user.created", executor = custom("rayon"))]
async fn h(_e: &Envelope) {}

fn main() {}
