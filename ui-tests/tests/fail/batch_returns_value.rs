use eventflow::prelude::*;

#[event_handler("metric.*", batch(max_size = 10, max_wait = "50ms"))]
async fn h(_batch: Vec<Envelope>) -> Result<u32, HandlerError> { Ok(1) }

fn main() {}
