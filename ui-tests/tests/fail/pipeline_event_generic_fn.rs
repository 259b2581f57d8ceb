use eventflow::prelude::*;

#[event]
async fn generic<T: Clone + Send + Sync + 'static>(input: T) -> Outcome<T> {
    Outcome::success(input)
}

fn main() {}
