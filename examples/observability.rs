//! Operating a bus (no server needed): a scheduled function samples sensors every 200ms,
//! a filter drops implausible readings, a batched handler stores the rest in batches of at
//! most 8 (a full batch at once, the rest after 100ms), a
//! periodic timer publishes heartbeats; at the end the example prints the metrics report,
//! what each scheduled function did, and the health status.
//!
//! Every figure printed here is also sent to the `metrics` facade (install a recorder such
//! as `metrics-exporter-prometheus` to export them), and every publish, delivery and
//! attempt is a `tracing` span.
//!
//! Run it with `cargo run --example observability`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventflow::prelude::*;
use eventflow::{HealthChecker, Payload};

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "metric.reading")]
struct Reading {
    sensor: String,
    value: f64,
}

static SAMPLES: AtomicU64 = AtomicU64::new(0);

/// Reads ten sensors; sensor 9 is broken and reports an impossible temperature.
#[scheduled(every = "200ms", name = "sample_sensors")]
async fn sample_sensors(ctx: &ScheduleContext) -> Result<(), HandlerError> {
    let round = SAMPLES.fetch_add(1, Ordering::Relaxed);
    for sensor in 0..10 {
        let value = if sensor == 9 {
            -273.0
        } else {
            20.0 + sensor as f64 + round as f64 / 10.0
        };
        ctx.publish(Reading {
            sensor: format!("s{sensor}"),
            value,
        })
        .await?;
    }
    Ok(())
}

fn plausible(reading: &Reading) -> bool {
    reading.value > -50.0
}

#[event_handler(
    "metric.*",
    name = "store_readings",
    batch(max_size = 8, max_wait = "100ms"),
    filter = plausible
)]
async fn store_readings(readings: Vec<Reading>, ctx: &BatchContext) -> Result<(), HandlerError> {
    let mean = readings.iter().map(|r| r.value).sum::<f64>() / readings.len() as f64;
    println!(
        "  [store_readings] stored a batch of {} readings (mean {mean:.1}, attempt {})",
        readings.len(),
        ctx.attempt()
    );
    Ok(())
}

#[event_handler("system.heartbeat", name = "heartbeat")]
async fn heartbeat(event: &Envelope) {
    println!("  [heartbeat] {} {}", event.name, event.id);
}

#[tokio::main]
async fn main() -> eventflow::Result<()> {
    let bus = EventBus::builder().build().await?;
    let timer = bus.schedule_every(Duration::from_millis(300), MissedTicks::Skip, || {
        Envelope::with_payload(
            "system.heartbeat".into(),
            Payload::json(serde_json::json!({})),
        )
    });
    let health = HealthChecker::new(&bus)
        .timeout(Duration::from_secs(1))
        .failure_rate_threshold(0.2, 5);

    println!("running for one second...");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    timer.stop();
    // Let the last batch settle.
    tokio::time::sleep(Duration::from_millis(150)).await;

    println!("\nmetrics:\n{}", bus.metrics());
    println!("scheduled functions:");
    for s in bus.schedule_stats() {
        println!(
            "  {}: {} run(s) succeeded, {} failed",
            s.name, s.succeeded, s.failed
        );
    }
    let report = health.check().await;
    println!("\nhealth: {:?}", report.status);
    for reason in &report.reasons {
        println!("  - {reason}");
    }
    bus.shutdown().await?;
    Ok(())
}
