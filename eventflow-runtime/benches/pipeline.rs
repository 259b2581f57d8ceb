//! A pipeline of three trivial Inline steps against calling the three functions directly,
//! in the same run. Target: at most 3x.

mod support;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow_runtime::pipeline::{
    Done, ExecutionContext, Outcome, OutcomeExt, Pipeline, StepDef, StepOptions,
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
                std::hint::black_box(direct("order-42").await);
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
                    std::hint::black_box(through(&pipeline, "order-42").await);
                }
                support::record("pipeline", iters, start.elapsed())
            }
        })
    });
    // The two again, in alternating batches of 32 within one measurement, so that the
    // ratio does not depend on how busy the machine was during each one.
    g.bench_function("alternating", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let pipeline = pipeline.clone();
            async move {
                let mut subject = std::time::Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(32);
                    let t0 = Instant::now();
                    for _ in 0..n {
                        std::hint::black_box(direct("order-42").await);
                    }
                    let t1 = Instant::now();
                    for _ in 0..n {
                        std::hint::black_box(through(&pipeline, "order-42").await);
                    }
                    let t2 = Instant::now();
                    support::record("alternating_direct", n, t1 - t0);
                    support::record("alternating_pipeline", n, t2 - t1);
                    subject += t2 - t1;
                    done += n;
                }
                subject
            }
        })
    });
    g.finish();
    support::report_ratio(
        "3-step pipeline vs direct calls, measured separately",
        "pipeline",
        "direct_calls",
    );
    support::report_ratio(
        "3-step pipeline vs direct calls, alternating (target <= 3x)",
        "alternating_pipeline",
        "alternating_direct",
    );
}

/// The three steps called directly.
async fn direct(input: &str) -> Option<String> {
    let input = std::hint::black_box(input.to_owned());
    match parse(input).await {
        Ok(Done::Success(n)) => match double(n).await {
            Ok(Done::Success(n)) => label(n).await.ok().and_then(|d| match d {
                Done::Success(s) => Some(s),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    }
}

/// The three steps through the pipeline.
async fn through(pipeline: &Pipeline, input: &str) -> Option<String> {
    let run = pipeline.run(std::hint::black_box(input.to_owned())).await;
    run.into_output::<String>()
}

criterion_group!(benches, bench);
criterion_main!(benches);
