use eventflow::prelude::*;

#[derive(Event, Default)]
#[event(name = "process_payment", stop_on_error)]
struct ProcessPayment;

fn main() {}
