//! The bus configured from a TOML file (`examples/config.toml`): defaults for every
//! handler, headers, and per-handler overrides by name.
//!
//! Run it with `cargo run --example config` (or pass another file's path).

use std::sync::atomic::{AtomicU32, Ordering};

use eventflow::BusConfig;
use eventflow::config::from_toml;
use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.paid")]
struct OrderPaid {
    order: u32,
}

static CHARGES: AtomicU32 = AtomicU32::new(0);

/// The gateway fails three times: the attribute's 2 attempts would give up, the
/// configuration's 4 get through.
#[event_handler("order.paid", name = "charge_card", retry(max_attempts = 2))]
async fn charge_card(paid: OrderPaid, ctx: &HandlerContext) -> Result<(), HandlerError> {
    let n = CHARGES.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= 3 {
        return Err(HandlerError::msg(format!("gateway timeout (try {n})")));
    }
    println!(
        "  [charge_card] charged order {} on attempt {} (service header: {:?})",
        paid.order,
        ctx.attempt(),
        ctx.headers().get("service")
    );
    Ok(())
}

static RECEIPTS: AtomicU32 = AtomicU32::new(0);

/// Sets no retry: the configuration's `default_retry` gives it three attempts.
#[event_handler("order.paid", name = "send_receipt")]
async fn send_receipt(paid: OrderPaid) -> Result<(), HandlerError> {
    if RECEIPTS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(HandlerError::msg("mail server busy"));
    }
    println!("  [send_receipt] receipt for order {} sent", paid.order);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml").to_owned());
    let text = std::fs::read_to_string(&path)?;
    let config: BusConfig = from_toml(&text)?;
    println!("read {path}");

    let bus = EventBus::builder()
        .only(["charge_card", "send_receipt"])
        .config(config)
        .build()
        .await?;
    let report = bus.dispatch(OrderPaid { order: 7 }).await?;
    for o in &report.outcomes {
        println!(
            "{}: {:?} after {} attempt(s)",
            o.handler, o.status, o.attempts
        );
    }

    // A mistake in the file names the key and the nearest known one.
    let err = from_toml::<BusConfig>("[default_retry]\nmax_attempts = 3\nbackoff = 2.0")
        .expect_err("an unknown key");
    println!("a typo is refused: {err}");
    bus.shutdown().await?;
    Ok(())
}
