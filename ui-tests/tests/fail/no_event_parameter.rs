use eventflow::prelude::*;

#[event_handler("user.created")]
async fn h(_ctx: &HandlerContext) {}

fn main() {}
