//! Publisher and workers as separate processes, sharing the work through Redis Streams.
//!
//! ```sh
//! cargo run --example distributed -- worker            # in one or more terminals
//! cargo run --example distributed -- publish 1000      # in another
//! cargo run --example distributed -- failed            # list failed jobs
//! ```
//!
//! `REDIS_URL` selects the server (default `redis://127.0.0.1:6379/0`). Every event whose
//! number is a multiple of 97 fails: it is retried twice through Redis and then lands in
//! the failed jobs, which any process can list.

use std::time::Duration;

use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "invoice.issued")]
struct InvoiceIssued {
    number: u64,
    amount_cents: u64,
}

#[event_handler(
    "invoice.issued",
    name = "send_invoice",
    retry(max_attempts = 3, backoff_factor = 0.2),
    concurrency = 32
)]
async fn send_invoice(invoice: InvoiceIssued, ctx: &HandlerContext) -> Result<(), HandlerError> {
    if invoice.number.is_multiple_of(97) {
        println!(
            "invoice {} failed (attempt {})",
            invoice.number,
            ctx.attempt()
        );
        return Err(HandlerError::msg("printer on fire"));
    }
    if invoice.number.is_multiple_of(100) {
        println!("pid {} sent invoice {}", std::process::id(), invoice.number);
    }
    Ok(())
}

fn builder() -> eventflow::EventBusBuilder {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    EventBus::builder()
        .redis(url)
        .queue("eventflow-example")
        .consumer_group("invoicing")
        .connections(2)
}

#[tokio::main]
async fn main() -> eventflow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => {
            let bus = builder().build().await?;
            bus.start().await?;
            println!("worker {} consuming; Ctrl-C to stop", std::process::id());
            let _ = tokio::signal::ctrl_c().await;
            let report = bus.shutdown().await?;
            println!(
                "stopped; {} delivery(ies) left for other workers",
                report.unfinished.len()
            );
        }
        Some("publish") => {
            let n: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100);
            let bus = builder().build().await?;
            for number in 1..=n {
                bus.publish(InvoiceIssued {
                    number,
                    amount_cents: number * 100,
                })
                .await?;
            }
            bus.publish_delayed(
                InvoiceIssued {
                    number: n + 1,
                    amount_cents: 1,
                },
                Duration::from_secs(5),
            )
            .await?;
            println!("published {n} invoices, and one more due in 5 s");
        }
        Some("failed") => {
            let bus = builder().build().await?;
            for job in bus.dead_letters().await? {
                let payload = job
                    .envelope
                    .payload_json()
                    .map_or_else(|e| format!("<{e}>"), |v| v.to_string());
                println!(
                    "{} {payload} attempts={} error={:?}",
                    job.id, job.attempts, job.error
                );
            }
            println!("health: {:?}", bus.health().await);
        }
        _ => eprintln!("usage: distributed (worker | publish [N] | failed)"),
    }
    Ok(())
}
