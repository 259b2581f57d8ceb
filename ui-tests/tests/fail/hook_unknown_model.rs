use eventflow::prelude::*;

struct NotAModel;

#[before_create(Usr)]
fn audit(_user: &mut Usr) {}

#[hooks]
impl NotAModel {
    #[before_create]
    fn stamp(&mut self) {}
}

fn main() {}
