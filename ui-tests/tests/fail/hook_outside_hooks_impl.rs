use eventflow::prelude::*;

#[derive(Model, Clone, Serialize, Deserialize)]
struct User {
    #[model(id)]
    id: Option<i64>,
}

impl User {
    #[before_create]
    fn stamp(&mut self) {}
}

// A free function must name its model.
#[after_create]
fn audit(_user: &User) {}

fn main() {}
