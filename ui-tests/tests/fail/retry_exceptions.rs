use eventflow::prelude::*;

#[event_handler("user.created", retry(max_attempts = 3, exceptions = [std::io::Error]))]
async fn h(_e: &Envelope) {}

fn main() {}
