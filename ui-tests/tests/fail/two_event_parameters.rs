use eventflow::prelude::*;

#[derive(Event, Clone, Serialize, Deserialize)]
#[event(name = "user.created")]
struct UserCreated;

#[event_handler("user.created")]
async fn h(_a: UserCreated, _b: &Envelope) {}

fn main() {}
