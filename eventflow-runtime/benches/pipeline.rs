//! A pipeline of three trivial Inline steps against calling the three functions directly,
//! in the same run. Target: at most 5x.

mod support;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_runtime::pipeline::{
    ExecutionContext, Outcome, OutcomeExt, Pipeline, StepDef, StepOptions,
};

async fn parse(s: String) -> Outcome<u64> {
    Outcome::success(s.len() as u64)
}

async fn double(n: u64) -> Outcome<u64> {
    Outcome::success(n * 2)
}

async fn label(n: u64) -> Outcome<String> {
    Outcome::success(format!("n={n}"))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pipeline = Pipeline::builder("three")
        .then(StepDef::from_fn(
            "parse",
            StepOptions::DEFAULT,
            |ctx: ExecutionContext, s: String| async move { (ctx, parse(s).await) },
        ))
        .then(StepDef::from_fn(
            "double",
            StepOptions::DEFAULT,
            |ctx: ExecutionContext, n: u64| async move { (ctx, double(n).await) },
        ))
        .then(StepDef::from_fn(
            "label",
            StepOptions::DEFAULT,
            |ctx: ExecutionContext, n: u64| async move { (ctx, label(n).await) },
        ))
        .build()
        .expect("pipeline");

    let mut g = c.benchmark_group("pipeline_3_steps");
    g.bench_function("direct_calls", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let start = Instant::now();
            for _ in 0..iters {
                let input = std::hint::black_box("order-42".to_owned());
                let out = match parse(input).await {
                    Ok(eventflow_runtime::pipeline::Done::Success(n)) => match double(n).await {
                        Ok(eventflow_runtime::pipeline::Done::Success(n)) => label(n).await.ok(),
                        _ => None,
                    },
                    _ => None,
                };
                std::hint::black_box(out);
            }
            support::record("direct_calls", iters, start.elapsed())
        })
    });
    g.bench_function("pipeline", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pipeline = pipeline.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let run = pipeline
                        .run(std::hint::black_box("order-42".to_owned()))
                        .await;
                    debug_assert!(run.is_success());
                    std::hint::black_box(run);
                }
                support::record("pipeline", iters, start.elapsed())
            }
        })
    });
    g.finish();
    support::report_ratio(
        "3-step pipeline vs direct calls (target <= 5x)",
        "pipeline",
        "direct_calls",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
