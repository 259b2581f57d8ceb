//! The settings of the Redis backend.

use std::sync::Arc;
use std::time::Duration;

use eventflow_runtime::{Backend, BoxFuture};

/// Settings of the Redis backend. Build it with [`RedisConfig::new`] and adjust fields, or
/// use the builder's shortcuts (`.redis(url)`, `.queue(..)`, `.consumer_group(..)`, `.pool(..)`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://...` for TLS (server
    /// certificates are checked against the system's trusted roots, or against
    /// [`tls_root_cert_pem`](Self::tls_root_cert_pem) when set).
    pub url: String,
    /// A PEM root certificate to trust for `rediss://` instead of the system's roots (a
    /// private CA).
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// Key prefix and stream namespace.
    pub queue: String,
    /// Consumer group: workers of one group share the work.
    pub group: String,
    /// Publisher connections (multiplexed: each carries many concurrent commands).
    pub pool_min: usize,
    /// Upper bound on publisher connections.
    pub pool_max: usize,
    /// Approximate `MAXLEN` of the stream; `None` keeps every entry.
    pub max_len: Option<usize>,
    /// Largest serialized envelope accepted by publish, in bytes.
    pub max_entry_bytes: usize,
    /// Entries idle this long in another consumer's pending list are claimed.
    pub claim_idle: Duration,
    /// How long one `XREADGROUP` blocks (also how fast a worker notices shutdown).
    pub block: Duration,
    /// Entries read per call.
    pub batch: usize,
    /// Entries handled at once by one worker.
    pub max_in_flight: usize,
    /// Deliveries of one entry before it goes to dead letters.
    pub max_deliveries: u32,
    /// Bound on one publish (and on each command of the publisher connections).
    pub publish_timeout: Duration,
    /// How often each worker promotes due delayed entries.
    pub promote_interval: Duration,
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
        }
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
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
            let backend = crate::RedisBackend::connect(*self).await?;
            Ok(Arc::new(backend) as Arc<dyn Backend>)
        })
    }
}
