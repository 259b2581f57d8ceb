use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "metric.cpu")]
struct Cpu {
    load: f64,
}

// `batch(...)` without a `Vec` parameter.
#[event_handler("metric.*", batch(max_size = 10, max_wait = "50ms"))]
async fn one_at_a_time(_e: Cpu) {}

// A `Vec` parameter without `batch(...)`.
#[event_handler("metric.*")]
async fn no_settings(_e: Vec<Cpu>) {}

// A plain fn cannot be batched.
#[event_handler("metric.*", batch(max_size = 10, max_wait = "50ms"))]
fn plain(_e: Vec<Cpu>) {}

// Bad settings.
#[event_handler("metric.*", batch(max_size = 0, max_wait = "soon"))]
async fn bad_settings(_e: Vec<Cpu>) {}

// The wrong context.
#[event_handler("metric.*", batch(max_size = 10, max_wait = "50ms"))]
async fn wrong_context(_e: Vec<Cpu>, _ctx: &HandlerContext) {}

fn main() {}
