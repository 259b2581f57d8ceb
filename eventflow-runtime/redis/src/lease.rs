//! The lease a worker holds on the entries it is handling, and whether it still holds it.
//!
//! An entry idle longer than `claim_idle` may be claimed by another worker. While a worker
//! handles an entry, its lease loop resets the entry's idle time every third of
//! `claim_idle`. A worker that was stopped meanwhile (SIGSTOP, a long pause, Redis out of
//! reach) may have lost entries to another worker: its acknowledgements and renewals of
//! those then check that it still owns them, so it never takes back or settles what the
//! other worker now holds. In the steady state (the lease renewed without a gap since the
//! entry was read) an acknowledgement is a plain `XACK`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::Shared;

/// The running entries (by stream and id, with when each was read) and the lease's clock.
pub(crate) struct Leases {
    running: Mutex<HashMap<(String, String), Instant>>,
    clock: Mutex<Clock>,
}

struct Clock {
    /// When the last renewal round that succeeded began.
    renewed: Instant,
    /// When a gap in the renewals was last seen (a round later than `claim_idle / 2`).
    lapsed: Option<Instant>,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            running: Mutex::new(HashMap::new()),
            clock: Mutex::new(Clock {
                renewed: Instant::now(),
                lapsed: None,
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Leases {
    /// Whether this worker may have lost entry `id` to another worker since it read it:
    /// then settle it only if it still owns it.
    pub(crate) fn may_be_lost(&self, stream: &str, id: &str, claim_idle: Duration) -> bool {
        let read = lock(&self.running)
            .get(&(stream.to_owned(), id.to_owned()))
            .copied();
        let clock = lock(&self.clock);
        let Some(read) = read else {
            return true;
        };
        let since = Instant::now().saturating_duration_since(clock.renewed.max(read));
        since >= claim_idle / 2 || clock.lapsed.is_some_and(|at| at >= read)
    }
}

/// An entry in this worker's running set, removed when dropped.
pub(crate) struct Running {
    shared: Arc<Shared>,
    key: (String, String),
}

impl Running {
    /// Enters entry `id` of `stream` in the running set; `None` when it is running here
    /// already.
    pub(crate) fn enter(shared: &Arc<Shared>, stream: &str, id: &str) -> Option<Running> {
        let key = (stream.to_owned(), id.to_owned());
        let mut running = lock(&shared.leases.running);
        if running.contains_key(&key) {
            return None;
        }
        running.insert(key.clone(), Instant::now());
        Some(Running {
            shared: shared.clone(),
            key,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.shared.leases.running).remove(&self.key);
    }
}

/// Keeps the entries this worker is handling from looking abandoned: every third of
/// `claim_idle`, `XCLAIM ... JUSTID` to this same consumer resets their idle time (without
/// counting a delivery), for the entries it still owns: one another worker claimed while
/// this one was stopped is not taken back. A handler that hangs is bounded by its
/// `timeout`, not by this.
pub(crate) async fn lease_loop(shared: Arc<Shared>) {
    let claim_idle = shared.cfg.claim_idle;
    let every = (claim_idle / 3).max(Duration::from_millis(10));
    let script = redis::Script::new(crate::scripts::RENEW_OWNED);
    loop {
        tokio::time::sleep(every).await;
        let round = Instant::now();
        let mut by_stream: HashMap<String, Vec<String>> = HashMap::new();
        for (stream, id) in lock(&shared.leases.running).keys() {
            by_stream
                .entry(stream.clone())
                .or_default()
                .push(id.clone());
        }
        if by_stream.is_empty() && shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut clock = lock(&shared.leases.clock);
            if round.saturating_duration_since(clock.renewed) >= claim_idle / 2 {
                clock.lapsed = Some(round);
            }
        }
        let mut ok = true;
        for (stream, ids) in &by_stream {
            for chunk in ids.chunks(256) {
                let mut c = shared.publisher();
                let res = script
                    .key(stream)
                    .arg(&shared.cfg.group)
                    .arg(&shared.consumer)
                    .arg(chunk)
                    .invoke_async::<i64>(&mut c)
                    .await;
                if let Err(e) = res {
                    ok = false;
                    tracing::warn!(error = %e, "eventflow: could not refresh the lease of running entries");
                }
            }
        }
        if ok {
            lock(&shared.leases.clock).renewed = round;
        }
    }
}
