use eventflow::prelude::*;

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "metric.cpu")]
struct Cpu {
    load: f64,
}

fn busy(cpu: &Cpu) -> bool {
    cpu.load > 0.9
}

#[event_handler("metric.*", batch(max_size = 100, max_wait = "50ms"), filter = busy)]
async fn typed(events: Vec<Cpu>, ctx: &BatchContext) -> Result<(), HandlerError> {
    assert_eq!(events.len(), ctx.envelopes().len());
    Ok(())
}

#[event_handler("metric.*", batch(max_size = 10, max_wait = "1s"), retry(max_attempts = 3))]
async fn untyped(events: Vec<Envelope>) {
    let _ = events;
}

fn main() {}
