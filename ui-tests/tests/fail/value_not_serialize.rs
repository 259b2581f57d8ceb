use eventflow::prelude::*;

struct NotSerialize;

#[event_handler("user.created")]
async fn h(_e: &Envelope) -> Result<NotSerialize, HandlerError> { Ok(NotSerialize) }

fn main() {}
