use eventflow::prelude::*;

#[scheduled(every = 30)]
async fn tick() {}

fn main() {}
