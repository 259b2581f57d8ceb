//! The whole bus as data: [`BusConfig`], applied with
//! [`EventBusBuilder::config`](super::EventBusBuilder::config).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendConfig, MemoryBackend};
use crate::config::duration;
use crate::error::EventError;
use crate::executor::{Executor, ExecutorConfig};
use crate::retry::RetryPolicy;
use crate::util::BoxFuture;

/// A bus's settings as data (earnorm's `EVENT_BUS_CONFIG`), read from TOML or JSON with
/// [`config::from_toml`](crate::config::from_toml) and friends. `B` is the backend's
/// settings type, read from the `[backend]` section: `BusConfig<RedisConfig>` for Redis
/// (URL, queue, group, connections, ...); the default [`NoBackend`] takes none (the memory
/// backend).
///
/// ```
/// use eventflow_runtime::config::from_toml;
/// use eventflow_runtime::BusConfig;
/// let cfg: BusConfig = from_toml(r#"
///     shutdown_timeout = "10s"
///     default_timeout = "5s"
///     [default_retry]
///     max_attempts = 3
///     backoff_factor = 0.5
///     [headers]
///     service = "billing"
///     [handlers.send_welcome]
///     timeout = "2s"
///     concurrency = 4
///     retry = { max_attempts = 5, interval_start = 1.0, interval_step = 1.0 }
/// "#).unwrap();
/// assert_eq!(cfg.handlers["send_welcome"].concurrency, Some(4));
/// ```
///
/// What applies, from strongest to weakest: builder methods called after
/// `.config(cfg)`; the `[handlers.NAME]` overrides (over the handler's attribute or
/// `Handler` settings); the handler's own settings; `default_retry` / `default_timeout`
/// (for handlers that set none); the built-in defaults.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "B: Deserialize<'de>"))]
#[non_exhaustive]
pub struct BusConfig<B = NoBackend> {
    /// The backend's settings (`[backend]`); none: the builder's backend (memory unless
    /// set in code).
    #[serde(default = "none", skip_serializing)]
    pub backend: Option<B>,
    /// How long shutdown waits for in-flight work.
    #[serde(default, with = "duration::option")]
    pub shutdown_timeout: Option<Duration>,
    /// The retry policy of handlers that set none.
    #[serde(default)]
    pub default_retry: Option<RetryPolicy>,
    /// The attempt timeout of handlers that set none.
    #[serde(default, with = "duration::option")]
    pub default_timeout: Option<Duration>,
    /// Headers added to every published event.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Accept events no handler matches ([`EventBusBuilder::allow_unhandled`](super::EventBusBuilder::allow_unhandled)).
    #[serde(default)]
    pub allow_unhandled: Option<bool>,
    /// Metrics on or off.
    #[serde(default)]
    pub metrics: Option<bool>,
    /// Tracing spans on or off.
    #[serde(default)]
    pub tracing: Option<bool>,
    /// Samples kept per handler for the percentiles of `bus.metrics()`.
    #[serde(default)]
    pub metric_samples: Option<usize>,
    /// Threads of the bus's pool for plain functions.
    #[serde(default)]
    pub blocking_threads: Option<usize>,
    /// Per-handler overrides, by handler name (`[handlers.send_welcome]`).
    #[serde(default)]
    pub handlers: BTreeMap<String, HandlerOverrides>,
}

fn none<B>() -> Option<B> {
    None
}

impl<B> Default for BusConfig<B> {
    fn default() -> Self {
        BusConfig {
            backend: None,
            shutdown_timeout: None,
            default_retry: None,
            default_timeout: None,
            headers: BTreeMap::new(),
            allow_unhandled: None,
            metrics: None,
            tracing: None,
            metric_samples: None,
            blocking_threads: None,
            handlers: BTreeMap::new(),
        }
    }
}

/// Settings of one handler that configuration changes; those left out keep the handler's
/// own.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HandlerOverrides {
    /// Its retry policy.
    pub retry: Option<RetryPolicy>,
    /// Its attempt timeout.
    #[serde(with = "duration::option")]
    pub timeout: Option<Duration>,
    /// Deliveries at once at most.
    pub concurrency: Option<usize>,
    /// Its priority among the handlers of one event.
    pub priority: Option<i32>,
    /// Where it runs.
    pub executor: Option<Executor>,
    /// Its executor's workers.
    pub executor_config: Option<ExecutorConfig>,
}

impl HandlerOverrides {
    /// Applies these settings to a handler's options.
    pub(super) fn apply(&self, o: &mut super::HandlerOptions) {
        if let Some(r) = self.retry {
            *o = o.clone().with_retry(r);
        }
        if let Some(t) = self.timeout {
            o.timeout = Some(t);
        }
        if let Some(c) = self.concurrency {
            o.concurrency = Some(c);
        }
        if let Some(p) = self.priority {
            o.priority = p;
        }
        if let Some(e) = self.executor {
            o.executor = e;
        }
        if let Some(c) = &self.executor_config {
            o.executor_config = c.clone();
        }
    }
}

/// The backend settings of a [`BusConfig`] that has none to give: a `[backend]` section is
/// refused (read a `BusConfig<RedisConfig>` to configure Redis).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct NoBackend;

impl<'de> Deserialize<'de> for NoBackend {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "this configuration takes no [backend] section: read a `BusConfig<RedisConfig>` \
             (eventflow::redis::RedisConfig) to configure a Redis backend",
        ))
    }
}

impl BackendConfig for NoBackend {
    fn connect(
        self: Box<Self>,
    ) -> BoxFuture<'static, Result<std::sync::Arc<dyn Backend>, EventError>> {
        Box::pin(async {
            Ok(std::sync::Arc::new(MemoryBackend::new()) as std::sync::Arc<dyn Backend>)
        })
    }
}
