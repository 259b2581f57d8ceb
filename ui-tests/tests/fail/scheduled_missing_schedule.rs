use eventflow::prelude::*;

#[scheduled(name = "cleanup")]
async fn cleanup() {}

fn main() {}
