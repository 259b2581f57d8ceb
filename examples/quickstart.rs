//! A user registration flow on the in-memory bus (no server needed):
//!
//! - `register_user` validates the registration (volnux's Quick Start: "Email is required")
//!   and publishes `user.created`;
//! - `send_welcome_email` talks to a flaky mail server: it fails twice, then succeeds;
//! - `sync_crm` talks to a CRM that is down: its retries run out and the event goes to
//!   dead letters;
//! - `audit` sees every `user.**` event, untyped.
//!
//! Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "user.registration.submitted")]
struct RegistrationSubmitted {
    email: String,
    name: String,
}

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "user.created")]
struct UserCreated {
    user_id: String,
    email: String,
}

#[event_handler("user.registration.submitted", name = "register_user")]
async fn register_user(
    form: RegistrationSubmitted,
    ctx: &HandlerContext,
) -> Result<(), HandlerError> {
    if form.email.trim().is_empty() {
        println!(
            "  [register_user] rejected {:?}: email is required",
            form.name
        );
        // Permanent: retrying cannot help, so it goes straight to dead letters.
        return Err(HandlerError::permanent_msg("Email is required"));
    }
    let user_id = "u983".to_owned();
    println!("  [register_user] created {user_id} for {}", form.email);
    ctx.publish(UserCreated {
        user_id,
        email: form.email,
    })
    .await?;
    Ok(())
}

static SMTP_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler(
    "user.created",
    name = "send_welcome_email",
    retry(max_attempts = 3, backoff_factor = 0.05, max_backoff = 1.0, retry_on = [std::io::Error]),
    timeout = "2s"
)]
async fn send_welcome_email(user: UserCreated, ctx: &HandlerContext) -> Result<(), HandlerError> {
    if SMTP_CALLS.fetch_add(1, Ordering::SeqCst) < 2 {
        println!(
            "  [send_welcome_email] attempt {}: mail server busy",
            ctx.attempt()
        );
        return Err(std::io::Error::other("421 mail server busy").into());
    }
    println!(
        "  [send_welcome_email] attempt {}: welcome mail sent to {}",
        ctx.attempt(),
        user.email
    );
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("CRM unreachable")]
struct CrmDown;

#[event_handler(
    "user.created",
    name = "sync_crm",
    retry(max_attempts = 2, backoff_factor = 0.05)
)]
async fn sync_crm(user: &UserCreated, ctx: &HandlerContext) -> Result<(), CrmDown> {
    println!(
        "  [sync_crm] attempt {}: pushing {} to the CRM... unreachable",
        ctx.attempt(),
        user.user_id
    );
    Err(CrmDown)
}

#[event_handler("user.**", name = "audit")]
async fn audit(event: &Envelope) {
    let cause = event
        .causation_id
        .map(|c| format!(", caused by {c}"))
        .unwrap_or_default();
    println!("  [audit] {} {}{cause}", event.name, event.id);
}

#[tokio::main]
async fn main() -> eventflow::Result<()> {
    let bus = EventBus::builder()
        .shutdown_timeout(Duration::from_secs(10))
        .build()
        .await?;
    print!("{}", eventflow::Registry::global().describe());

    println!("\n1. Alice registers (dispatch waits for the handlers of this event):");
    let report = bus
        .dispatch(RegistrationSubmitted {
            email: "alice@example.com".into(),
            name: "Alice".into(),
        })
        .await?;
    for o in &report.outcomes {
        println!(
            "  -> {}: {}",
            o.handler,
            if o.succeeded() { "ok" } else { "failed" }
        );
    }

    println!("\n2. A registration without an email (publish returns once accepted):");
    bus.publish(RegistrationSubmitted {
        email: String::new(),
        name: "Nobody".into(),
    })
    .await?;

    println!("\n3. Publishing an event nobody handles is an error, not a silent drop:");
    match bus
        .publish_raw("order.refunded", serde_json::json!({"id": 1}))
        .await
    {
        Err(e) => println!("  -> {e}"),
        Ok(()) => println!("  -> accepted"),
    }

    println!(
        "\n4. Shutting down: in-flight work (welcome mail retries, CRM retries) drains first."
    );
    let shutdown = bus.shutdown().await?;
    println!("  -> clean shutdown: {}", shutdown.is_clean());

    let dead = bus.dead_letters().await?;
    println!("\nDead letters ({}):", dead.len());
    for d in &dead {
        println!(
            "  {} handler={} event={} attempts={} error={:?}",
            d.id, d.handler, d.envelope.name, d.attempts, d.error
        );
    }
    Ok(())
}
