use eventflow::prelude::*;

struct NotAnError;

#[event_handler("user.created", retry(retry_on = [NotAnError]))]
async fn h(_e: &Envelope) {}

fn main() {}
