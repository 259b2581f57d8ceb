//! The admin dashboard on a live bus: handlers that succeed, fail, retry and dead-letter on
//! a timer, with the dashboard at http://127.0.0.1:8080/.
//!
//! ```sh
//! cargo run --example dashboard                      # until Ctrl-C
//! cargo run --example dashboard -- --addr 127.0.0.1:9000 --for 5
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
    amount_cents: u64,
}

/// Always works.
#[event_handler("order.placed", name = "confirm_order")]
async fn confirm_order(_order: OrderPlaced) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    Ok(())
}

static FLAKY: AtomicU64 = AtomicU64::new(0);

/// Fails one attempt in three; the retry succeeds.
#[event_handler(
    "order.placed",
    name = "reserve_stock",
    retry(max_attempts = 3, backoff_factor = 0.2)
)]
async fn reserve_stock(_order: OrderPlaced) -> Result<(), HandlerError> {
    if FLAKY.fetch_add(1, Ordering::Relaxed).is_multiple_of(3) {
        return Err(HandlerError::msg("warehouse busy, try again"));
    }
    Ok(())
}

/// Declines large orders every time: they end in dead letters.
#[event_handler(
    "order.placed",
    name = "charge_card",
    retry(max_attempts = 2, backoff_factor = 0.1)
)]
async fn charge_card(order: OrderPlaced) -> Result<(), HandlerError> {
    if order.amount_cents > 90_000 {
        return Err(HandlerError::msg(format!(
            "card declined for order {}: amount {} over the limit",
            order.id, order.amount_cents
        )));
    }
    Ok(())
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: std::net::SocketAddr = arg("--addr")
        .unwrap_or_else(|| eventflow::admin::DEFAULT_ADDR.to_owned())
        .parse()?;
    let run_for = arg("--for").and_then(|s| s.parse::<u64>().ok());
    let bus = EventBus::builder().build().await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("dashboard at http://{}/", listener.local_addr()?);
    let app = eventflow::admin::Admin::new(bus.clone()).router();
    let server = tokio::spawn(async move { eventflow::admin::axum::serve(listener, app).await });
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                n += 1;
                let amount_cents = (n * 7_919) % 100_000;
                if let Err(e) = bus
                    .publish(OrderPlaced {
                        id: n,
                        amount_cents,
                    })
                    .await
                {
                    eprintln!("publish failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };
    match run_for {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => tokio::signal::ctrl_c().await?,
    }
    publisher.abort();
    server.abort();
    let letters = bus.dead_letters().await?.len();
    bus.shutdown().await?;
    println!("stopped; {letters} dead letters");
    Ok(())
}
