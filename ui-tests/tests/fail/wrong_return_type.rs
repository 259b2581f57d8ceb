use eventflow::prelude::*;

#[event_handler("user.created")]
async fn h(_e: &Envelope) -> i32 { 1 }

#[event_handler("user.created")]
async fn g(_e: &Envelope) -> Option<u32> { None }

fn main() {}
