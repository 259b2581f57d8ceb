//! The bus builder's Redis methods.

use std::time::Duration;

use eventflow_runtime::EventBusBuilder;

use crate::config::RedisConfig;

/// The Redis methods of [`EventBusBuilder`] (in the prelude of `eventflow`). Each fills the
/// builder's pending [`RedisConfig`], so settings compose in the order they are written:
/// `.queue("a").redis(url)` keeps the queue. [`redis_config`](Self::redis_config) sets
/// every setting at once; a setting made before it with a method of this trait and given
/// another value by the config is a conflict, which `build` refuses with a
/// [`ValidationError`](eventflow_runtime::ValidationError) naming both (set it after
/// `redis_config`, or in the config).
///
/// ```no_run
/// use std::time::Duration;
/// use eventflow_redis::RedisBusExt;
/// use eventflow_runtime::EventBus;
/// # async fn f() -> eventflow_runtime::Result<()> {
/// let bus = EventBus::builder()
///     .redis("redis://127.0.0.1:6379/0")
///     .queue("orders")
///     .consumer_group("billing")
///     .claim_idle(Duration::from_secs(60))
///     .max_in_flight(64)
///     .max_stream_len(1_000_000)
///     .build()
///     .await?;
/// bus.start().await?;
/// # Ok(()) }
/// ```
pub trait RedisBusExt: Sized {
    /// Uses Redis Streams at `url` (`redis://[:password@]host:port/db`, or `rediss://`).
    fn redis(self, url: impl Into<String>) -> Self;
    /// Every setting of the Redis backend at once. Settings made before it with this
    /// trait's methods must agree with it (else `build` fails); those made after it
    /// change it.
    fn redis_config(self, config: RedisConfig) -> Self;
    /// The Redis key prefix and stream namespace (default `eventflow`).
    fn queue(self, name: impl Into<String>) -> Self;
    /// The consumer group: workers of one group share the work (default `workers`).
    fn consumer_group(self, name: impl Into<String>) -> Self;
    /// Publisher connections opened at build, each multiplexed (it carries many
    /// concurrent commands); default 1.
    fn connections(self, n: usize) -> Self;
    /// Publisher connections: opens `min` at build; `max` only bounds `min` (the pool does
    /// not grow). Use [`connections`](Self::connections).
    #[deprecated(note = "opens `min` connections and never grows: use `connections(n)`")]
    fn pool(self, min: usize, max: usize) -> Self;
    /// Entries idle this long in another consumer's pending list are claimed (default 30 s).
    fn claim_idle(self, idle: Duration) -> Self;
    /// Entries one worker handles at once (default 256).
    fn max_in_flight(self, n: usize) -> Self;
    /// Deliveries of one entry before it goes to dead letters (default 5).
    fn max_deliveries(self, n: u32) -> Self;
    /// Largest serialized envelope publish accepts, in bytes (default 1 MiB).
    fn max_entry_bytes(self, n: usize) -> Self;
    /// Bound on one publish (default 5 s).
    fn publish_timeout(self, timeout: Duration) -> Self;
    /// Approximate bound on the stream's length (`XADD MAXLEN ~ n`); unbounded by default.
    fn max_stream_len(self, n: usize) -> Self;
}

/// Sets one field of the pending config, noting that it was set by `method`.
fn with(
    mut b: EventBusBuilder,
    method: &'static str,
    f: impl FnOnce(&mut RedisConfig),
) -> EventBusBuilder {
    let c = b.backend_config_mut::<RedisConfig>();
    f(c);
    if !c.set_by_methods.contains(&method) {
        c.set_by_methods.push(method);
    }
    b
}

/// Whether `new` gives the setting of `method` another value than `old`.
fn disagrees(method: &str, old: &RedisConfig, new: &RedisConfig) -> bool {
    match method {
        "redis" => old.url != new.url,
        "queue" => old.queue != new.queue,
        "consumer_group" => old.group != new.group,
        "connections" | "pool" => (old.pool_min, old.pool_max) != (new.pool_min, new.pool_max),
        "claim_idle" => old.claim_idle != new.claim_idle,
        "max_in_flight" => old.max_in_flight != new.max_in_flight,
        "max_deliveries" => old.max_deliveries != new.max_deliveries,
        "max_entry_bytes" => old.max_entry_bytes != new.max_entry_bytes,
        "publish_timeout" => old.publish_timeout != new.publish_timeout,
        "max_stream_len" => old.max_len != new.max_len,
        _ => false,
    }
}

impl RedisBusExt for EventBusBuilder {
    fn redis(self, url: impl Into<String>) -> Self {
        let url = url.into();
        with(self, "redis", |c| c.url = url)
    }

    fn redis_config(mut self, mut config: RedisConfig) -> Self {
        let old = self.backend_config_mut::<RedisConfig>();
        config.conflicts = old
            .set_by_methods
            .iter()
            .filter(|m| disagrees(m, old, &config))
            .map(|m| (*m).to_owned())
            .collect();
        self.backend_config(config)
    }

    fn queue(self, name: impl Into<String>) -> Self {
        let name = name.into();
        with(self, "queue", |c| c.queue = name)
    }

    fn consumer_group(self, name: impl Into<String>) -> Self {
        let name = name.into();
        with(self, "consumer_group", |c| c.group = name)
    }

    fn connections(self, n: usize) -> Self {
        with(self, "connections", |c| {
            c.pool_min = n;
            c.pool_max = n;
        })
    }

    fn pool(self, min: usize, max: usize) -> Self {
        with(self, "pool", |c| {
            c.pool_min = min;
            c.pool_max = max;
        })
    }

    fn claim_idle(self, idle: Duration) -> Self {
        with(self, "claim_idle", |c| c.claim_idle = idle)
    }

    fn max_in_flight(self, n: usize) -> Self {
        with(self, "max_in_flight", |c| c.max_in_flight = n)
    }

    fn max_deliveries(self, n: u32) -> Self {
        with(self, "max_deliveries", |c| c.max_deliveries = n)
    }

    fn max_entry_bytes(self, n: usize) -> Self {
        with(self, "max_entry_bytes", |c| c.max_entry_bytes = n)
    }

    fn publish_timeout(self, timeout: Duration) -> Self {
        with(self, "publish_timeout", |c| c.publish_timeout = timeout)
    }

    fn max_stream_len(self, n: usize) -> Self {
        with(self, "max_stream_len", |c| c.max_len = Some(n))
    }
}
