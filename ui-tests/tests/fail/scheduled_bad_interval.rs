use eventflow::prelude::*;

#[scheduled(every = "30 seconds")]
async fn a() {}

#[scheduled(every = "10us")]
async fn b() {}

fn main() {}
