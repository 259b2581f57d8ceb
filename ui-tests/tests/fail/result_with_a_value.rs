use eventflow::prelude::*;

#[event_handler("user.created")]
async fn h(_e: &Envelope) -> Result<u32, HandlerError> { Ok(1) }

fn main() {}
