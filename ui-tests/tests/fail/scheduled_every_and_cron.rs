use eventflow::prelude::*;

#[scheduled(every = "30s", cron = "0 * * * * *")]
async fn cleanup() {}

fn main() {}
