use eventflow::prelude::*;

struct Wrapper<T>(T);

#[hooks]
impl<T> Wrapper<T> {
    #[before_create]
    fn stamp(&mut self) {}
}

fn main() {}
