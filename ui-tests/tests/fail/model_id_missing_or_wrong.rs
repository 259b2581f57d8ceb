use eventflow::prelude::*;

#[derive(Model, Clone, Serialize, Deserialize)]
struct NoId {
    name: String,
}

#[derive(Model, Clone, Serialize, Deserialize)]
struct WrongId {
    #[model(id)]
    id: u64,
}

#[derive(Model, Clone, Serialize, Deserialize)]
#[model(name = "Bad Name")]
struct BadName {
    #[model(id)]
    id: Option<i64>,
}

fn main() {}
