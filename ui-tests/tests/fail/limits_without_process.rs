use eventflow::prelude::*;

#[event_handler("user.created", executor = ThreadPool, executor_config(max_memory = "256MiB"))]
async fn h(_e: &Envelope) {}

#[event_handler("user.created", executor = Process, executor_config(max_memory = "256 parsecs", max_cpu_time = "ten"))]
async fn g(_e: &Envelope) {}

fn main() {}
