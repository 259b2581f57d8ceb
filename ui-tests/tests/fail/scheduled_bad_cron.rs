use eventflow::prelude::*;

#[scheduled(cron = "*/5 * * *")]
async fn cleanup() {}



#[scheduled(cron = "0 */75 * * * *")]
async fn out_of_range() {}
fn main() {}
