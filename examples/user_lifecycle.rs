//! The User model of earnorm's documentation on SQLite (a file in a temporary folder; no
//! server needed): lifecycle hooks print as they run, model events reach handlers after
//! each commit, a hook vetoes a delete, and a transaction rolls back.
//!
//! Run it with `cargo run --example user_lifecycle`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventflow::prelude::*;

#[derive(Model, Clone, Debug, Serialize, Deserialize)]
#[model(name = "user")]
struct User {
    #[model(id)]
    id: Option<i64>,
    username: String,
    email: String,
    status: String,
    active_orders: u32,
    created_at: Option<u64>,
    updated_at: Option<u64>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[hooks]
impl User {
    /// Validates and prepares the user before it is created.
    #[before_create]
    async fn stamp(&mut self, _ctx: &HookContext) -> Result<(), HookError> {
        println!("  [hook] before_create {}", self.username);
        if !self.email.contains('@') {
            return Err(HookError::veto(format!("invalid email `{}`", self.email)));
        }
        self.created_at = Some(now());
        Ok(())
    }

    #[before_update]
    fn touch(&mut self) {
        println!("  [hook] before_update {}", self.username);
        self.updated_at = Some(now());
    }

    /// Refreshes caches and the search index after any write.
    #[after_write]
    async fn reindex(&self, ctx: &HookContext) {
        println!(
            "  [hook] after_write {} (after {:?}): search index updated",
            self.username,
            ctx.operation()
        );
    }

    /// A user with active orders stays.
    #[before_delete]
    fn guard(&self) -> Result<(), HookError> {
        println!("  [hook] before_delete {}", self.username);
        if self.active_orders > 0 {
            return Err(HookError::veto(format!(
                "{} has {} active order(s)",
                self.username, self.active_orders
            )));
        }
        Ok(())
    }

    #[after_delete]
    fn cleanup(&self) {
        println!("  [hook] after_delete {}: files removed", self.username);
    }
}

/// A hook from elsewhere: runs after the impl's `before_create` hooks.
#[before_create(User)]
async fn audit_new_user(user: &mut User, _ctx: &HookContext) -> Result<(), HookError> {
    user.email = user.email.trim().to_lowercase();
    println!(
        "  [hook] audit_new_user: email normalized to {}",
        user.email
    );
    Ok(())
}

#[event_handler("user.created")]
async fn send_welcome(event: ModelEvent<User>) {
    println!(
        "  [event] user.created: welcome mail to {}",
        event.model.email
    );
}

#[event_handler("user.updated")]
async fn on_update(event: ModelEvent<User>) {
    println!(
        "  [event] user.updated: {} changed {:?}",
        event.model.username, event.changed
    );
}

#[event_handler("user.deleted")]
async fn on_delete(event: ModelEvent<User>) {
    println!("  [event] user.deleted: {}", event.model.username);
}

/// Lets the outbox relay publish and the handlers run before the next step prints.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eventflow-user-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bus = EventBus::builder().build().await?;
    let store = Store::sqlite(dir.join("app.db"), &bus).await?;

    println!("create ada:");
    let ada = store
        .create(User {
            id: None,
            username: "ada".into(),
            email: " Ada@Example.com ".into(),
            status: "inactive".into(),
            active_orders: 1,
            created_at: None,
            updated_at: None,
        })
        .await?;
    settle().await;

    println!("\nactivate ada:");
    let ada = store
        .update(&User {
            status: "active".into(),
            ..ada
        })
        .await?;
    settle().await;

    println!("\ncreate a user with a bad email:");
    let bad = User {
        id: None,
        username: "mallory".into(),
        email: "not-an-email".into(),
        status: "inactive".into(),
        active_orders: 0,
        created_at: None,
        updated_at: None,
    };
    if let Err(e) = store.create(bad.clone()).await {
        println!("  vetoed: {e}");
    }

    println!("\ndelete ada while she has an order:");
    if let Err(e) = store.delete(&ada).await {
        println!("  vetoed: {e}");
    }

    println!("\na transaction that fails half-way:");
    let result = store
        .transaction(|tx| async move {
            tx.create(User {
                username: "bob".into(),
                email: "bob@example.com".into(),
                ..bad
            })
            .await?;
            Err::<(), _>(StoreError::abort("the payment provider refused"))
        })
        .await;
    println!(
        "  {}",
        result.err().map(|e| e.to_string()).unwrap_or_default()
    );
    println!("  users stored: {}", store.all::<User>().await?.len());

    println!("\nada's order ships; delete her:");
    let ada = store
        .update(&User {
            active_orders: 0,
            ..ada
        })
        .await?;
    store.delete(&ada).await?;
    settle().await;

    println!("\nstore: {:?}", store.stats());
    bus.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
