//! The bus builder's Redis methods.

use eventflow_runtime::EventBusBuilder;

use crate::config::RedisConfig;

/// The Redis methods of [`EventBusBuilder`] (in the prelude of `eventflow`). Each fills the
/// builder's pending [`RedisConfig`], so settings compose in the order they are written:
/// `.queue("a").redis(url)` keeps the queue, and [`redis_config`](Self::redis_config)
/// replaces every setting made before it, as its name says.
///
/// ```no_run
/// use eventflow_redis::RedisBusExt;
/// use eventflow_runtime::EventBus;
/// # async fn f() -> eventflow_runtime::Result<()> {
/// let bus = EventBus::builder()
///     .redis("redis://127.0.0.1:6379/0")
///     .queue("orders")
///     .consumer_group("billing")
///     .build()
///     .await?;
/// bus.start().await?;
/// # Ok(()) }
/// ```
pub trait RedisBusExt: Sized {
    /// Uses Redis Streams at `url` (`redis://[:password@]host:port/db`, or `rediss://`).
    fn redis(self, url: impl Into<String>) -> Self;
    /// Every setting of the Redis backend at once (replacing those set before).
    fn redis_config(self, config: RedisConfig) -> Self;
    /// The Redis key prefix and stream namespace (default `eventflow`).
    fn queue(self, name: impl Into<String>) -> Self;
    /// The consumer group: workers of one group share the work (default `workers`).
    fn consumer_group(self, name: impl Into<String>) -> Self;
    /// Publisher connections: `min` opened at build, at most `max`.
    fn pool(self, min: usize, max: usize) -> Self;
}

fn with(mut b: EventBusBuilder, f: impl FnOnce(&mut RedisConfig)) -> EventBusBuilder {
    f(b.backend_config_mut::<RedisConfig>());
    b
}

impl RedisBusExt for EventBusBuilder {
    fn redis(self, url: impl Into<String>) -> Self {
        let url = url.into();
        with(self, |c| c.url = url)
    }

    fn redis_config(self, config: RedisConfig) -> Self {
        self.backend_config(config)
    }

    fn queue(self, name: impl Into<String>) -> Self {
        let name = name.into();
        with(self, |c| c.queue = name)
    }

    fn consumer_group(self, name: impl Into<String>) -> Self {
        let name = name.into();
        with(self, |c| c.group = name)
    }

    fn pool(self, min: usize, max: usize) -> Self {
        with(self, |c| {
            c.pool_min = min;
            c.pool_max = max;
        })
    }
}
