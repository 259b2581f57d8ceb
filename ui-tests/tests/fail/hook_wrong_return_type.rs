use eventflow::prelude::*;

#[derive(Model, Clone, Serialize, Deserialize)]
struct User {
    #[model(id)]
    id: Option<i64>,
}

#[hooks]
impl User {
    #[before_create]
    fn count(&mut self) -> u32 {
        1
    }

    #[after_create]
    async fn extra(&self, _ctx: &HookContext, _n: u32) {}
}

fn main() {}
