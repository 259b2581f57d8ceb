//! The settings of the Redis backend.

use std::sync::Arc;
use std::time::Duration;

use eventflow_runtime::{Backend, BoxFuture};

/// Settings of the Redis backend. Build it with [`RedisConfig::new`] and adjust fields, or
/// use the builder's methods of [`RedisBusExt`](crate::RedisBusExt) (`.redis(url)`, `.queue(..)`,
/// `.consumer_group(..)`, `.connections(..)`, `.claim_idle(..)`, ...).
///
/// Its `Debug` output, and every error and log line of the backend, show the URL with its
/// credentials replaced by `***` (a password in the user part, `rediss://:pw@host`, or in
/// the query, `redis+unix:///run/redis.sock?pass=pw`).
///
/// Also read from configuration (the `[backend]` section of a
/// `BusConfig<RedisConfig>`), with the keys of its fields; durations as `"30s"`. Keys left
/// out keep the defaults of [`RedisConfig::new`] (for `redis://127.0.0.1:6379/0`), and an
/// unknown key is an error naming the nearest known one. The TLS root certificate is set
/// in code.
///
/// ```
/// use eventflow_redis::RedisConfig;
/// use eventflow_runtime::config::from_toml;
/// let cfg: RedisConfig = from_toml(r#"
///     url = "redis://127.0.0.1:6379/0"
///     queue = "orders"
///     group = "billing"
///     claim_idle = "60s"
/// "#).unwrap();
/// assert_eq!(cfg.claim_idle.as_secs(), 60);
/// let err = from_toml::<RedisConfig>("queu = \"orders\"").unwrap_err();
/// assert!(err.to_string().contains("did you mean `queue`?"), "{err}");
/// ```
#[derive(Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://...` for TLS (server
    /// certificates are checked against the system's trusted roots, or against
    /// [`tls_root_cert_pem`](Self::tls_root_cert_pem) when set).
    pub url: String,
    /// A PEM root certificate to trust for `rediss://` instead of the system's roots (a
    /// private CA).
    #[serde(skip)]
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// Key prefix and stream namespace.
    pub queue: String,
    /// Consumer group: workers of one group share the work.
    pub group: String,
    /// Publisher connections opened at build (multiplexed: each carries many concurrent
    /// commands); the pool does not grow past them.
    pub pool_min: usize,
    /// Bounds `pool_min`.
    pub pool_max: usize,
    /// Approximate `MAXLEN` of the stream; `None` keeps every entry.
    pub max_len: Option<usize>,
    /// Largest serialized envelope accepted by publish, in bytes. A worker does not
    /// receive an entry larger than this (and 1 KiB for field names) whole: it
    /// dead-letters it from the first 4 KiB of its fields.
    pub max_entry_bytes: usize,
    /// Entries idle this long in another consumer's pending list are claimed.
    #[serde(with = "eventflow_runtime::config::duration")]
    pub claim_idle: Duration,
    /// How long an idle worker waits for the queue's bell before it reads again: how late
    /// it sees entries added to the stream by programs that do not ring the bell (eventflow's
    /// publishers do), and how fast it notices shutdown.
    #[serde(with = "eventflow_runtime::config::duration")]
    pub block: Duration,
    /// Entries read per call.
    pub batch: usize,
    /// Entries handled at once by one worker.
    pub max_in_flight: usize,
    /// Deliveries of one entry before it goes to dead letters.
    pub max_deliveries: u32,
    /// Bound on one publish (and on each command of the publisher connections).
    #[serde(with = "eventflow_runtime::config::duration")]
    pub publish_timeout: Duration,
    /// How often each worker promotes due delayed entries.
    #[serde(with = "eventflow_runtime::config::duration")]
    pub promote_interval: Duration,
    /// The [`RedisBusExt`](crate::RedisBusExt) methods that set a field of this config.
    #[serde(skip)]
    pub(crate) set_by_methods: Vec<&'static str>,
    /// Settings made with those methods before `redis_config` that it gave another value.
    #[serde(skip)]
    pub(crate) conflicts: Vec<String>,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            tls_root_cert_pem: None,
            queue: "eventflow".into(),
            group: "workers".into(),
            pool_min: 1,
            pool_max: 4,
            max_len: None,
            max_entry_bytes: 1 << 20,
            claim_idle: Duration::from_secs(30),
            block: Duration::from_millis(500),
            batch: 64,
            max_in_flight: 256,
            max_deliveries: 5,
            publish_timeout: Duration::from_secs(5),
            promote_interval: Duration::from_millis(100),
            set_by_methods: Vec::new(),
            conflicts: Vec::new(),
        }
    }
}

/// Query parameters of a Redis URL that hold a credential.
fn is_secret_param(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("pass") || key.contains("secret") || key.contains("token") || key == "auth"
}

/// The URL with its credentials replaced by `***`, for messages: the user part before an
/// `@` (`redis://user:pw@host` becomes `redis://***@host`) and the values of query
/// parameters that hold a password (`?pass=pw` becomes `?pass=***`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &base[..s], &base[at + 1..]),
        // An `@` without a scheme: the whole text may be a credential.
        (None, Some(_)) => "***".to_owned(),
        _ => base.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

pub(crate) use redact_url as redact;

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field(
                "tls_root_cert_pem",
                &self.tls_root_cert_pem.as_ref().map(|p| p.len()),
            )
            .field("queue", &self.queue)
            .field("group", &self.group)
            .field("pool_min", &self.pool_min)
            .field("pool_max", &self.pool_max)
            .field("max_len", &self.max_len)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("claim_idle", &self.claim_idle)
            .field("block", &self.block)
            .field("batch", &self.batch)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_deliveries", &self.max_deliveries)
            .field("publish_timeout", &self.publish_timeout)
            .field("promote_interval", &self.promote_interval)
            .finish()
    }
}

impl Default for RedisConfig {
    /// The defaults, for the server at `redis://127.0.0.1:6379/0`.
    fn default() -> Self {
        RedisConfig::new("redis://127.0.0.1:6379/0")
    }
}

impl eventflow_runtime::backend::BackendConfig for RedisConfig {
    fn connect(
        self: Box<Self>,
    ) -> BoxFuture<'static, Result<Arc<dyn Backend>, eventflow_runtime::EventError>> {
        Box::pin(async move {
            if !self.conflicts.is_empty() {
                let problems = self
                    .conflicts
                    .iter()
                    .map(|m| {
                        eventflow_runtime::Problem::new(
                            eventflow_runtime::ProblemKind::InvalidOption,
                            m,
                            format!(
                                "`.{m}(..)` was set before `.redis_config(..)`, which gives it \
                                 another value; set it after `redis_config`, or in the config"
                            ),
                        )
                    })
                    .collect();
                return Err(eventflow_runtime::ValidationError { problems }.into());
            }
            let backend = crate::RedisBackend::connect(*self).await?;
            Ok(Arc::new(backend) as Arc<dyn Backend>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_in_every_url_form() {
        for (url, shown) in [
            ("redis://user:s3cr3t@host:6379/0", "redis://***@host:6379/0"),
            ("rediss://:s3cr3t@host", "rediss://***@host"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cr3t",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "unix:///run/redis.sock?user=app&password=s3cr3t",
                "unix:///run/redis.sock?user=app&password=***",
            ),
            ("user:s3cr3t@host", "***"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let cfg = RedisConfig::new("redis://app:s3cr3t@host/0?password=s3cr3t");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("***@host"), "{debug}");
    }
}
