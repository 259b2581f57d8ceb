use eventflow::prelude::*;

#[event_handler("user.created", retry(retry_on = [42]))]
async fn h(_e: &Envelope) {}

fn main() {}
