use eventflow::prelude::*;

#[event_handler("user.created")]
async fn h(_e: &Envelope) -> Result<(), String> { Ok(()) }

fn main() {}
