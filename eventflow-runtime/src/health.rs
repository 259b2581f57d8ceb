//! [`HealthChecker`]: healthy / degraded / unhealthy, with reasons (earnorm's
//! `HealthChecker(event_bus, check_interval, timeout)`).
//!
//! | finding | status |
//! | --- | --- |
//! | the backend does not answer, or its check exceeds `timeout` | unhealthy |
//! | a handler's failure rate since the previous check is over the threshold (with at least `min_settled` events settled) | degraded |
//! | consumer-group lag, pending entries or dead letters over their limits (when set) | degraded |
//!
//! ```
//! use std::time::Duration;
//! use eventflow_runtime::{EventBus, HealthChecker, HealthStatus};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> eventflow_runtime::Result<()> {
//! let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
//! let checker = HealthChecker::new(&bus).check_interval(Duration::from_secs(60)).timeout(Duration::from_secs(5));
//! let report = checker.check().await;
//! assert_eq!(report.status, HealthStatus::Healthy);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::backend::BackendHealth;
use crate::bus::EventBus;
use crate::telemetry::HandlerMetrics;

/// A health checker's settings as data (earnorm's `HEALTH_CHECK_CONFIG`), for
/// [`HealthChecker::config`]. Keys left out keep the defaults of [`HealthChecker::new`].
///
/// ```
/// use eventflow_runtime::config::from_toml;
/// use eventflow_runtime::health::HealthConfig;
/// let cfg: HealthConfig = from_toml("check_interval = \"30s\"\nmax_lag = 1000").unwrap();
/// assert_eq!(cfg.max_lag, Some(1000));
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HealthConfig {
    /// How often `start` checks.
    #[serde(with = "crate::config::duration")]
    pub check_interval: Duration,
    /// Bound on the backend's check.
    #[serde(with = "crate::config::duration")]
    pub timeout: Duration,
    /// A handler failing more than this share (0.0-1.0) of settled events makes the bus
    /// degraded...
    pub failure_rate: f64,
    /// ...once at least this many are settled since the previous check.
    pub min_settled: u64,
    /// More unread entries than this makes the bus degraded.
    pub max_lag: Option<u64>,
    /// More read-but-unacknowledged entries than this makes the bus degraded.
    pub max_pending: Option<u64>,
    /// More dead letters than this makes the bus degraded.
    pub max_dead_letters: Option<u64>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            check_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            failure_rate: 0.5,
            min_settled: 10,
            max_lag: None,
            max_pending: None,
            max_dead_letters: None,
        }
    }
}

/// The overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Everything within limits.
    Healthy,
    /// Working, but something is over a limit.
    Degraded,
    /// The backend cannot be reached.
    Unhealthy,
}

/// One health check's result.
#[derive(Clone, Debug)]
pub struct HealthReport {
    /// The verdict.
    pub status: HealthStatus,
    /// Why it is not healthy (empty when healthy).
    pub reasons: Vec<String>,
    /// What the backend reported (default when it did not answer in time).
    pub backend: BackendHealth,
    /// When the check ran.
    pub checked_at: SystemTime,
}

#[derive(Clone)]
struct Limits {
    failure_rate: f64,
    min_settled: u64,
    max_lag: Option<u64>,
    max_pending: Option<u64>,
    max_dead_letters: Option<u64>,
}

struct State {
    previous: HashMap<String, HandlerMetrics>,
    latest: Option<HealthReport>,
}

/// Checks a bus's health on demand or periodically. See the [module documentation](self).
#[derive(Clone)]
pub struct HealthChecker {
    bus: EventBus,
    check_interval: Duration,
    timeout: Duration,
    limits: Arc<Limits>,
    state: Arc<Mutex<State>>,
}

impl HealthChecker {
    /// A checker with the defaults: every 60 s, 5 s timeout, failure rate threshold 0.5
    /// over at least 10 settled events, no limits on lag, pending or dead letters.
    pub fn new(bus: &EventBus) -> Self {
        HealthChecker {
            bus: bus.clone(),
            check_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            limits: Arc::new(Limits {
                failure_rate: 0.5,
                min_settled: 10,
                max_lag: None,
                max_pending: None,
                max_dead_letters: None,
            }),
            state: Arc::new(Mutex::new(State {
                previous: HashMap::new(),
                latest: None,
            })),
        }
    }

    /// Takes every setting from `config` (read as data); methods called after it change
    /// them.
    pub fn config(mut self, config: HealthConfig) -> Self {
        self.check_interval = config.check_interval;
        self.timeout = config.timeout;
        *self.limits_mut() = Limits {
            failure_rate: config.failure_rate,
            min_settled: config.min_settled,
            max_lag: config.max_lag,
            max_pending: config.max_pending,
            max_dead_letters: config.max_dead_letters,
        };
        self
    }

    fn limits_mut(&mut self) -> &mut Limits {
        Arc::make_mut(&mut self.limits)
    }

    /// How often [`start`](Self::start) checks.
    pub fn check_interval(mut self, every: Duration) -> Self {
        self.check_interval = every;
        self
    }

    /// Bound on the backend's check; past it the bus counts as unhealthy.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A handler whose failed share of settled events since the previous check is over
    /// `rate` (0.0-1.0), with at least `min_settled` settled, makes the bus degraded.
    pub fn failure_rate_threshold(mut self, rate: f64, min_settled: u64) -> Self {
        let l = self.limits_mut();
        l.failure_rate = rate;
        l.min_settled = min_settled;
        self
    }

    /// More unread entries than this makes the bus degraded.
    pub fn max_lag(mut self, max: u64) -> Self {
        self.limits_mut().max_lag = Some(max);
        self
    }

    /// More read-but-unacknowledged entries than this makes the bus degraded.
    pub fn max_pending(mut self, max: u64) -> Self {
        self.limits_mut().max_pending = Some(max);
        self
    }

    /// More dead letters than this makes the bus degraded.
    pub fn max_dead_letters(mut self, max: u64) -> Self {
        self.limits_mut().max_dead_letters = Some(max);
        self
    }

    /// Runs one check now.
    pub async fn check(&self) -> HealthReport {
        let mut reasons = Vec::new();
        let mut status = HealthStatus::Healthy;
        let backend = match tokio::time::timeout(self.timeout, self.bus.health()).await {
            Ok(h) => h,
            Err(_) => {
                reasons.push(format!(
                    "the backend's health check took longer than {:?}",
                    self.timeout
                ));
                status = HealthStatus::Unhealthy;
                BackendHealth::default()
            }
        };
        if status == HealthStatus::Healthy && !backend.reachable {
            status = HealthStatus::Unhealthy;
            reasons.push(format!(
                "the backend is unreachable{}",
                backend
                    .detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        let limits = &self.limits;
        let mut degrade = |reason: String| {
            if status == HealthStatus::Healthy {
                status = HealthStatus::Degraded;
            }
            reasons.push(reason);
        };
        for (what, value, max) in [
            ("lag", backend.lag, limits.max_lag),
            ("pending entries", backend.pending, limits.max_pending),
            (
                "dead letters",
                backend.dead_letters,
                limits.max_dead_letters,
            ),
        ] {
            if let (Some(v), Some(m)) = (value, max)
                && v > m
            {
                degrade(format!("{what}: {v}, over the limit of {m}"));
            }
        }
        let now = self.bus.metrics();
        let mut state = crate::util::lock(&self.state);
        for h in &now.handlers {
            let before = state.previous.get(&h.handler).cloned().unwrap_or_default();
            let ok = h.succeeded.saturating_sub(before.succeeded);
            let dead = h.dead_lettered.saturating_sub(before.dead_lettered);
            let settled = ok + dead;
            if settled >= limits.min_settled && settled > 0 {
                let rate = dead as f64 / settled as f64;
                if rate > limits.failure_rate {
                    degrade(format!(
                        "handler `{}` failed {dead} of {settled} events since the last check ({:.0}%, threshold {:.0}%)",
                        h.handler,
                        rate * 100.0,
                        limits.failure_rate * 100.0
                    ));
                }
            }
            let abandoned = h
                .abandoned_attempts
                .saturating_sub(before.abandoned_attempts);
            if abandoned > 0 {
                degrade(format!(
                    "handler `{}`: {abandoned} attempt(s) of its plain fn ran past the timeout since the last check and were abandoned; their threads run on",
                    h.handler
                ));
            }
        }
        let (busy, max) = now.blocking_threads;
        if max > 0 && busy >= max {
            degrade(format!(
                "all {max} threads for plain functions are busy; more wait for one"
            ));
        }
        state.previous = now
            .handlers
            .into_iter()
            .map(|h| (h.handler.clone(), h))
            .collect();
        let report = HealthReport {
            status,
            reasons,
            backend,
            checked_at: SystemTime::now(),
        };
        state.latest = Some(report.clone());
        report
    }

    /// The last check's report, if any.
    pub fn latest(&self) -> Option<HealthReport> {
        crate::util::lock(&self.state).latest.clone()
    }

    /// Checks every `check_interval` in the background until the returned handle is
    /// dropped or stopped; read the results with [`latest`](Self::latest).
    pub fn start(&self) -> HealthCheckHandle {
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let report = me.check().await;
                if report.status != HealthStatus::Healthy {
                    tracing::warn!(status = ?report.status, reasons = ?report.reasons, "eventflow: health check");
                }
                tokio::time::sleep(me.check_interval).await;
            }
        });
        HealthCheckHandle { task }
    }
}

/// Stops periodic health checks when dropped (or with [`stop`](Self::stop)).
pub struct HealthCheckHandle {
    task: tokio::task::JoinHandle<()>,
}

impl HealthCheckHandle {
    /// Stops the checks.
    pub fn stop(self) {}
}

impl Drop for HealthCheckHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for HealthCheckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheckHandle").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker").finish_non_exhaustive()
    }
}
