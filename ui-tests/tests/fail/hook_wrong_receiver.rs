use eventflow::prelude::*;

#[derive(Model, Clone, Serialize, Deserialize)]
struct User {
    #[model(id)]
    id: Option<i64>,
}

#[hooks]
impl User {
    // After the write the model cannot change.
    #[after_write]
    fn reindex(&mut self) {}

    // A hook borrows the model.
    #[before_create]
    fn consume(self) {}

    #[before_delete]
    fn guard(&mut self, _ctx: &HookContext) {}
}

fn main() {}
