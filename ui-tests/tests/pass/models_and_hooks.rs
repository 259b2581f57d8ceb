use eventflow::prelude::*;

#[derive(Model, Clone, Debug, Serialize, Deserialize)]
#[model(name = "user")]
struct User {
    #[model(id)]
    id: Option<i64>,
    username: String,
}

#[hooks]
impl User {
    #[before_create]
    async fn stamp(&mut self, _ctx: &HookContext) -> Result<(), HookError> {
        Ok(())
    }

    #[before_delete]
    fn guard(&self) -> Result<(), HookError> {
        Err(HookError::veto("user has active orders"))
    }

    #[after_write]
    async fn reindex(&self) {}

    fn not_a_hook(&self) -> usize {
        self.username.len()
    }
}

#[before_create(User)]
async fn audit_new_user(user: &mut User, _ctx: &HookContext) -> Result<(), std::io::Error> {
    user.username = user.username.trim().to_owned();
    Ok(())
}

#[event_handler("user.created")]
async fn welcome(event: ModelEvent<User>) -> eventflow::Result<()> {
    let _ = event.model.not_a_hook();
    Ok(())
}

fn main() {}
