//! The deliveries in flight, for shutdown to wait on and report.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Inner;
use crate::event::{Envelope, EventId, EventName};

/// A delivery still running when shutdown's timeout ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedDelivery {
    /// The event's id.
    pub event_id: EventId,
    /// The event's name.
    pub event: String,
}

/// What [`EventBus::shutdown`](crate::EventBus::shutdown) found.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    /// Deliveries that did not finish within the timeout; they were cancelled.
    pub unfinished: Vec<UnfinishedDelivery>,
}

impl ShutdownReport {
    /// Whether everything in flight finished in time.
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty()
    }
}

#[derive(Default)]
pub(super) struct InFlight {
    state: Mutex<InFlightState>,
    idle: Notify,
    /// Set once something waits for idleness; until then `leave` skips the notification.
    draining: AtomicBool,
}

#[derive(Default)]
pub(super) struct InFlightState {
    entries: Vec<Option<(EventId, EventName)>>,
    free: Vec<usize>,
    pub(super) count: usize,
}

impl InFlight {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        // Each critical section is a few assignments; a poisoned lock is still consistent.
        crate::util::lock(&self.state)
    }

    #[inline]
    pub(super) fn enter(&self, env: &Envelope) -> usize {
        let mut st = self.lock();
        st.count += 1;
        let entry = Some((env.id, env.name.clone()));
        match st.free.pop() {
            Some(k) => {
                st.entries[k] = entry;
                k
            }
            None => {
                st.entries.push(entry);
                st.entries.len() - 1
            }
        }
    }

    #[inline]
    pub(super) fn leave(&self, key: usize) {
        let mut st = self.lock();
        st.entries[key] = None;
        st.free.push(key);
        st.count -= 1;
        if st.count == 0 && self.draining.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    pub(super) fn snapshot(&self) -> Vec<UnfinishedDelivery> {
        self.lock()
            .entries
            .iter()
            .flatten()
            .map(|(id, name)| UnfinishedDelivery {
                event_id: *id,
                event: name.to_string(),
            })
            .collect()
    }

    pub(super) async fn wait_idle(&self) {
        self.draining.store(true, Ordering::SeqCst);
        loop {
            let notified = self.idle.notified();
            if self.lock().count == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub(super) struct InFlightGuard {
    pub(super) inner: Arc<Inner>,
    pub(super) key: usize,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.inner.inflight.leave(self.key);
        if self.inner.telemetry.metrics {
            self.inner.telemetry.in_flight.decrement(1.0);
        }
    }
}
