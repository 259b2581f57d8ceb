use eventflow::prelude::*;

#[derive(Event)]
#[event(name = "User Created")]
struct UserCreated;

fn main() {}
