//! What the router's handlers share: the bus, the settings, and the samples of the
//! overview's chart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventflow_runtime::EventBus;

use crate::Admin;
use crate::guard::Credentials;

/// How many per-second samples the chart keeps: five minutes.
pub(crate) const SAMPLES: usize = 300;

/// A registered pipeline, as `/api/pipelines` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct PipelineInfo {
    pub(crate) name: String,
    pub(crate) dot: String,
}

/// One second of the bus: events published, succeeded and failed (attempts) in it.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch, at the end of the second.
    pub(crate) t: u64,
    pub(crate) published: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
}

pub(crate) struct Inner {
    pub(crate) bus: EventBus,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) read_only: bool,
    pub(crate) max_payload_chars: usize,
    pub(crate) prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub(crate) pipelines: Vec<PipelineInfo>,
    samples: Mutex<VecDeque<Sample>>,
}

/// The router's state.
#[derive(Clone)]
pub(crate) struct State(pub(crate) Arc<Inner>);

impl std::ops::Deref for State {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl State {
    /// The state, and the task that samples the bus every second while the router lives.
    pub(crate) fn new(admin: Admin) -> State {
        let inner = Arc::new(Inner {
            bus: admin.bus,
            credentials: admin.credentials,
            read_only: admin.read_only,
            max_payload_chars: admin.max_payload_chars,
            prometheus: admin.prometheus,
            pipelines: admin.pipelines,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sample(Arc::downgrade(&inner)));
        }
        State(inner)
    }

    /// The chart's samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

fn totals(bus: &EventBus) -> (u64, u64, u64) {
    let m = bus.metrics();
    let (ok, failed) = m.handlers.iter().fold((0u64, 0u64), |(a, b), h| {
        (
            a.saturating_add(h.succeeded),
            b.saturating_add(h.failed_attempts),
        )
    });
    (m.published, ok, failed)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every second, what the bus did in it; stops when the router is dropped.
async fn sample(inner: Weak<Inner>) {
    let mut last = match inner.upgrade() {
        Some(i) => totals(&i.bus),
        None => return,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(i) = inner.upgrade() else {
            return;
        };
        let now = totals(&i.bus);
        let s = Sample {
            t: now_ms(),
            published: now.0.saturating_sub(last.0),
            succeeded: now.1.saturating_sub(last.1),
            failed: now.2.saturating_sub(last.2),
        };
        last = now;
        let mut q = i.samples.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == SAMPLES {
            q.pop_front();
        }
        q.push_back(s);
    }
}
