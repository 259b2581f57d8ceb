use eventflow::prelude::*;

#[scheduled(every = "30s", missed = Catchup)]
async fn cleanup() {}

fn main() {}
