//! An ETL pipeline: extract rows, transform them in parallel on a pool of threads (one
//! task per row, `for_each`), and load them into a flaky warehouse with retries; then run
//! an external program as a step (the Command executor). Prints the run traces.
//!
//! Run it with `cargo run --example etl_pipeline`.

use std::sync::atomic::{AtomicU32, Ordering};

use eventflow::pipeline::{EvaluationState, ForEachInput, StepDef, StepOptions, TaskOutputs};
use eventflow::prelude::*;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    city: String,
    celsius: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("warehouse is busy")]
struct WarehouseBusy;

#[event(name = "extract")]
async fn extract(source: String) -> Outcome<ForEachInput> {
    let rows = vec![
        Row {
            city: "Accra".into(),
            celsius: 31.0,
        },
        Row {
            city: "Oslo".into(),
            celsius: -3.5,
        },
        Row {
            city: "Lima".into(),
            celsius: 19.2,
        },
        Row {
            city: "Perth".into(),
            celsius: 27.9,
        },
    ];
    println!("    extract: {} rows from {source}", rows.len());
    Outcome::success(ForEachInput::new(rows))
}

/// CPU work, on a pool of two named threads, a fresh thread every two rows.
#[derive(Event, Default)]
#[event(
    name = "transform",
    executor = ThreadPool,
    executor_config(max_workers = 2, max_tasks_per_child = 2, thread_name_prefix = "etl-"),
    evaluation = SuccessForPartialSuccess,
)]
struct Transform;

impl Process for Transform {
    type Input = Row;
    type Output = String;
    async fn process(&self, _ctx: &mut ExecutionContext, row: Row) -> Outcome<String> {
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        let fahrenheit = row.celsius * 9.0 / 5.0 + 32.0;
        Outcome::success(format!("{},{fahrenheit:.1} (on {thread})", row.city))
    }
}

static LOADS: AtomicU32 = AtomicU32::new(0);

#[event(
    name = "load",
    retry(max_attempts = 4, backoff_factor = 0.02, retry_on = [WarehouseBusy])
)]
async fn load(rows: TaskOutputs) -> Outcome<usize> {
    if LOADS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(WarehouseBusy.into());
    }
    let mut lines = rows.take::<String>();
    lines.sort();
    for l in &lines {
        println!("    load: {l}");
    }
    Outcome::success(lines.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = Pipeline::builder("etl")
        .step_named("extract")
        .for_each(<Transform as eventflow::pipeline::PipelineEvent>::step())
        .configure(|o| o.evaluation = EvaluationState::SuccessForPartialSuccess)
        .step_named("load")
        .build()?;
    let run = pipeline.run("weather.csv".to_owned()).await;
    println!(
        "\n== etl: {:?}, {:?} rows loaded",
        run.status(),
        run.output::<usize>()
    );
    print!("{}", run.trace_text());

    // An external program as a step: JSON in on stdin, JSON out on stdout (here, `wc`
    // counts the bytes of the row's JSON).
    let external =
        StepDef::command::<Row, u64>("row_size", "sh", ["-c", "wc -c"], StepOptions::DEFAULT);
    let run = Pipeline::builder("cmd")
        .then(external)
        .build()?
        .run(Row {
            city: "Quito".into(),
            celsius: 14.0,
        })
        .await;
    println!(
        "\n== command: {:?}, the row's JSON is {:?} bytes",
        run.status(),
        run.output::<u64>()
    );
    Ok(())
}
