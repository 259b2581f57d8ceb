//! `eventflow`: the command-line tool for a Redis queue of eventflow. Tables for people,
//! `--json` for scripts, and exit codes that say what happened:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | Redis could not be reached or refused a command |
//! | 2 | the command line is wrong (clap's usage errors too) |
//! | 3 | the id names nothing (no such dead letter or delayed event) |
//! | 4 | a bulk operation finished, but some entries failed |

mod letters;
mod out;
mod queue;

use clap::{Parser, Subcommand};

/// Operates an eventflow queue on Redis from a terminal or a script.
// No `Debug`: it holds the Redis URL, which may carry a password.
#[derive(Parser)]
#[command(
    name = "eventflow",
    version,
    about,
    after_help = "Examples:\n  eventflow --redis redis://127.0.0.1:6379/0 --queue orders dead-letters list --handler billing\n  EVENTFLOW_REDIS_URL=redis://127.0.0.1/0 eventflow --queue orders stats --json"
)]
struct Cli {
    /// The Redis URL (a password goes in it, and is never printed).
    #[arg(
        long,
        env = "EVENTFLOW_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0",
        global = true
    )]
    redis: String,
    /// The queue (key prefix) the buses use.
    #[arg(
        long,
        env = "EVENTFLOW_QUEUE",
        default_value = "eventflow",
        global = true
    )]
    queue: String,
    /// The consumer group of the workers.
    #[arg(
        long,
        env = "EVENTFLOW_GROUP",
        default_value = "workers",
        global = true
    )]
    group: String,
    /// Machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Failed events: list, show, retry, remove.
    #[command(
        subcommand,
        name = "dead-letters",
        after_help = "Example:\n  eventflow --queue orders dead-letters list --event invoice.due --json"
    )]
    DeadLetters(letters::LettersCommand),
    /// Published, pending, lag and dead letters of the queue.
    #[command(after_help = "Example:\n  eventflow --queue orders stats")]
    Stats,
    /// The consumers of the group, with their idle time and pending entries.
    #[command(after_help = "Example:\n  eventflow --queue orders workers --json")]
    Workers,
    /// Events waiting for their time (delayed publishes and scheduled retries).
    #[command(
        subcommand,
        after_help = "Example:\n  eventflow --queue orders delayed list"
    )]
    Delayed(queue::DelayedCommand),
    /// Scheduled functions and the last tick any process claimed.
    #[command(after_help = "Example:\n  eventflow --queue orders schedules")]
    Schedules,
}

/// Why a command failed, and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn redis(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
    pub(crate) fn usage(m: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: m.into(),
        }
    }
    pub(crate) fn not_found(m: impl Into<String>) -> Self {
        Failure {
            code: 3,
            message: m.into(),
        }
    }
}

/// What every command works with.
pub(crate) struct Ctx {
    pub(crate) queue: String,
    pub(crate) group: String,
    pub(crate) json: bool,
    pub(crate) url: String,
}

impl Ctx {
    /// A plain connection for the queue's keys.
    pub(crate) async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, Failure> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            Failure::usage(format!(
                "invalid Redis URL `{}`: {e}",
                eventflow_redis::redact_url(&self.url)
            ))
        })?;
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| {
            Failure::redis(format!(
                "{} did not answer within 5 s",
                eventflow_redis::redact_url(&self.url)
            ))
        })?
        .map_err(|e| {
            Failure::redis(format!(
                "cannot connect to {}: {e}",
                eventflow_redis::redact_url(&self.url)
            ))
        })
    }

    /// A bus on the queue that only reads and acts on dead letters (it consumes nothing).
    pub(crate) async fn bus(&self) -> Result<eventflow_runtime::EventBus, Failure> {
        use eventflow_redis::RedisBusExt;
        let mut cfg = eventflow_redis::RedisConfig::new(&self.url);
        cfg.queue = self.queue.clone();
        cfg.group = self.group.clone();
        eventflow_runtime::EventBus::builder()
            .without_registry()
            .allow_unhandled(true)
            .redis_config(cfg)
            .build()
            .await
            .map_err(Failure::redis)
    }
}

fn main() {
    let cli = Cli::parse();
    let ctx = Ctx {
        queue: cli.queue,
        group: cli.group,
        json: cli.json,
        url: cli.redis,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eventflow: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::DeadLetters(c) => letters::run(&ctx, c).await,
            Command::Stats => queue::stats(&ctx).await,
            Command::Workers => queue::workers(&ctx).await,
            Command::Delayed(c) => queue::delayed(&ctx, c).await,
            Command::Schedules => queue::schedules(&ctx).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(f) => {
            eprintln!("eventflow: {}", f.message);
            std::process::exit(f.code);
        }
    }
}
