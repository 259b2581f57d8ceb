use eventflow::prelude::*;

#[scheduled(interval = "30s")]
async fn tick() {}

fn main() {}
