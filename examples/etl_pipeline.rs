//! An ETL pipeline: extract rows, transform them in child processes (the Process executor:
//! one task per row with `for_each`, two children, each replaced after two rows), and load
//! them into a flaky warehouse with retries; then run an external program as a step (the
//! Command executor). Prints the run traces.
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

/// CPU work in child processes of this program: two at most, each replaced after two rows.
#[derive(Event, Default)]
#[event(
    name = "transform",
    executor = Process,
    executor_config(max_workers = 2, max_tasks_per_child = 2),
    evaluation = SuccessForPartialSuccess,
)]
struct Transform;

impl Process for Transform {
    type Input = Row;
    type Output = String;
    async fn process(&self, _ctx: &mut ExecutionContext, row: Row) -> Outcome<String> {
        let fahrenheit = row.celsius * 9.0 / 5.0 + 32.0;
        Outcome::success(format!(
            "{},{fahrenheit:.1} (in process {})",
            row.city,
            std::process::id()
        ))
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A child process started by the Process executor serves steps here and exits.
    eventflow::pipeline::serve_process_steps();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    println!("parent process {}", std::process::id());
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
