//! A task on the Process executor with a reused child, against a raw pipe round trip to a
//! child (`cat`) of the same payload, in the same run. Target: at most 1.5x.

mod support;

use std::time::Instant;

use criterion::Criterion;
use eventflow_runtime::Executor;
use eventflow_runtime::SourceLocation;
use eventflow_runtime::pipeline::{
    ExecutionContext, Outcome, OutcomeExt, Pipeline, StepDef, StepOptions, StepRecord,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Clone, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

fn options() -> StepOptions {
    StepOptions {
        executor: Executor::Process,
        executor_config: eventflow_runtime::ExecutorConfig::new().max_workers(1),
        ..StepOptions::DEFAULT
    }
}

fn calibrate() -> StepDef {
    StepDef::from_fn(
        "bench_calibrate",
        options(),
        |ctx: ExecutionContext, r: Reading| async move {
            (
                ctx,
                Outcome::success(Reading {
                    value: r.value * 1.5,
                    ..r
                }),
            )
        },
    )
    .with_serde::<Reading, Reading>()
}

eventflow_runtime::__private_0_1_0::inventory::submit! {
    StepRecord {
        name: "bench_calibrate",
        type_name: "process_executor::calibrate",
        make: calibrate,
        location: SourceLocation { module: module_path!(), file: file!(), line: line!() },
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pipeline = Pipeline::builder("one")
        .then(calibrate())
        .build()
        .expect("pipeline");
    let reading = Reading {
        sensor: "boiler-7".into(),
        value: 81.25,
    };
    let line = format!("{}\n", serde_json::to_string(&reading).expect("json"));

    let mut g = c.benchmark_group("process_round_trip");
    g.bench_function("raw_pipe_cat", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let line = line.clone();
            async move {
                let mut child = tokio::process::Command::new("cat")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("cat");
                let mut stdin = child.stdin.take().expect("stdin");
                let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
                let mut back = String::new();
                let start = Instant::now();
                for _ in 0..iters {
                    stdin.write_all(line.as_bytes()).await.expect("write");
                    back.clear();
                    stdout.read_line(&mut back).await.expect("read");
                    std::hint::black_box(&back);
                }
                support::record("raw_pipe_cat", iters, start.elapsed())
            }
        })
    });
    // The child is started once, before measuring.
    rt.block_on(async {
        assert!(pipeline.run(reading.clone()).await.is_success(), "warm-up");
    });
    g.bench_function("process_executor", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (pipeline, reading) = (pipeline.clone(), reading.clone());
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let run = pipeline.run(reading.clone()).await;
                    debug_assert!(run.is_success());
                    std::hint::black_box(run);
                }
                support::record("process_executor", iters, start.elapsed())
            }
        })
    });
    g.finish();
    support::report_ratio(
        "Process executor task vs raw pipe round trip (target <= 1.5x)",
        "process_executor",
        "raw_pipe_cat",
    );
}

fn main() {
    // The children the Process executor starts are this benchmark binary: they serve here.
    eventflow_runtime::pipeline::serve_process_steps();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
