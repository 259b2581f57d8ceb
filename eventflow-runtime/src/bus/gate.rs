//! A concurrency limit whose waiters are served by priority (higher first), then in
//! arrival order (by a sequence number the caller assigns).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

struct Waiter {
    priority: i32,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then lower sequence number first.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

struct State {
    in_use: usize,
    waiting: BinaryHeap<Waiter>,
}

pub(crate) struct PriorityGate {
    limit: usize,
    state: Mutex<State>,
}

pub(crate) struct Permit {
    gate: Arc<PriorityGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Gives the permit back if the waiter is dropped after being granted one but before
/// taking it.
struct PendingGuard {
    gate: Arc<PriorityGate>,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl PriorityGate {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PriorityGate {
            limit: limit.max(1),
            state: Mutex::new(State {
                in_use: 0,
                waiting: BinaryHeap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so poisoning is harmless.
        crate::util::lock(&self.state)
    }

    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.lock().in_use
    }

    pub(crate) async fn acquire(self: &Arc<Self>, priority: i32, seq: u64) -> Permit {
        let rx = {
            let mut st = self.lock();
            if st.in_use < self.limit && st.waiting.is_empty() {
                st.in_use += 1;
                return Permit { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            st.waiting.push(Waiter {
                priority,
                seq,
                wake: tx,
            });
            rx
        };
        let mut guard = PendingGuard {
            gate: self.clone(),
            rx: Some(rx),
        };
        if let Some(rx) = guard.rx.as_mut() {
            // The sender lives in the heap until it is used; it is dropped unused only if
            // the gate itself goes away, and then there is nothing to wait for.
            let _ = rx.await;
        }
        guard.rx = None;
        Permit { gate: self.clone() }
    }

    fn release(&self) {
        let mut st = self.lock();
        while let Some(w) = st.waiting.pop() {
            if w.wake.send(()).is_ok() {
                return; // the permit passes to the waiter; in_use is unchanged
            }
        }
        st.in_use -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn serves_waiters_by_priority_then_fifo() {
        let gate = PriorityGate::new(1);
        let first = gate.acquire(0, 0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (seq, prio) in [(1, 1), (2, 5), (3, 5), (4, 10), (5, 1)] {
            let gate = gate.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _p = gate.acquire(prio, seq).await;
                order.lock().unwrap().push(seq);
            }));
        }
        while gate.waiting() < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![4, 2, 3, 1, 5]);
        assert_eq!(gate.in_use(), 0);
    }

    #[tokio::test]
    async fn cancelled_waiter_does_not_leak_the_permit() {
        let gate = PriorityGate::new(1);
        let p = gate.acquire(0, 0).await;
        let g2 = gate.clone();
        let waiter = tokio::spawn(async move { g2.acquire(0, 1).await });
        while gate.waiting() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        waiter.abort();
        let _ = waiter.await;
        drop(p);
        let _again = tokio::time::timeout(Duration::from_secs(1), gate.acquire(0, 2))
            .await
            .unwrap();
        assert_eq!(gate.in_use(), 1);
    }
}
