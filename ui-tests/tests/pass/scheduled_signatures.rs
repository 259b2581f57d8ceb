use eventflow::prelude::*;

#[scheduled(every = "30s")]
async fn no_parameter() {}

#[scheduled(cron = "0 */5 * * * *", name = "reports.hourly", missed = CatchUp, timeout = "10s")]
async fn with_context(ctx: &ScheduleContext) -> Result<(), HandlerError> {
    let _ = ctx.tick();
    Ok(())
}

#[scheduled(every = "1m", missed = Skip)]
fn plain(_ctx: ScheduleContext) -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
