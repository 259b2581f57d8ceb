use eventflow::prelude::*;

#[derive(Event, Default)]
#[event(executor = Threadpool)]
struct UnknownExecutor;

#[derive(Event, Default)]
#[event(executor_config(max_workers = 4))]
struct ConfigOnInline;

#[derive(Event, Default)]
#[event(executor = ThreadPool, executor_config(max_workers = 0))]
struct NoWorkers;

#[derive(Event, Default)]
#[event(evaluation = SuccessOnAllEventSuccess)]
struct UnknownEvaluation;

#[derive(Event, Default)]
#[event(retry(max_attempts = 3, retry_on = ["GatewayError"]))]
struct RetryOnNotAType;

fn main() {}
