use eventflow::prelude::*;

#[derive(Event)]
#[event(nmae = "user.created")]
struct UserCreated;

fn main() {}
