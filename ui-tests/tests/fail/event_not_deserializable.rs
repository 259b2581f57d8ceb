use eventflow::prelude::*;

#[derive(Event, Clone)]
#[event(name = "user.created")]
struct UserCreated;

#[event_handler("user.created")]
async fn h(_e: UserCreated) {}

fn main() {}
