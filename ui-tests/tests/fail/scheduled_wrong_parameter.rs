use eventflow::prelude::*;

#[scheduled(every = "30s")]
async fn a(_event: &Envelope) {}

#[scheduled(every = "30s")]
async fn b<T>() {}

#[scheduled(every = "30s")]
async fn c() -> u32 {
    1
}

fn main() {}
