use eventflow::prelude::*;

#[event_handler("user.created")]
struct NotAFunction;

fn main() {}
