//! The memory backend's workers: at most `workers` deliveries run at once, and those
//! waiting for a worker are taken highest priority first, in publish order within a
//! priority.
//!
//! A delivery is started (registered in flight, so shutdown waits for it) when it is
//! published, and queued as its future. A publish that finds a free worker hands its
//! delivery to the starter task (the common case: one atomic add and a channel send),
//! which spawns the worker from inside the runtime: a burst of publishes wakes the
//! runtime when the starter sleeps, not once per event, and the spawns land on a worker
//! thread's own queue. If the starter's runtime is gone, the publisher spawns the worker
//! itself.
//!
//! Otherwise the delivery waits in a heap; a worker that finishes takes the best waiting
//! one before it stops. The hand-over cannot strand a delivery: a publisher pushes, then
//! tries for a worker; a worker gives its place back, then looks at the heap; with
//! sequentially consistent counters one of the two sees the other.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::mpsc;

use crate::delivery::DeliveryReport;
use crate::util::BoxFuture;

type Work = BoxFuture<'static, DeliveryReport>;

/// Deliveries a memory bus runs at once by default; past it, events wait for a worker in
/// priority order.
pub const DEFAULT_WORKERS: usize = 1024;

/// A delivery waiting for a worker, and what it holds until it is done (its place among
/// the events the bus holds).
struct Waiting<P> {
    priority: i32,
    seq: u64,
    work: Work,
    hold: P,
}

impl<P> PartialEq for Waiting<P> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}
impl<P> Eq for Waiting<P> {}
impl<P> PartialOrd for Waiting<P> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Waiting<P> {
    /// Higher priority first, then earlier publish (the heap pops the greatest).
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The workers and the deliveries waiting for one.
pub(super) struct Workers<P> {
    max: usize,
    busy: AtomicUsize,
    queued: AtomicUsize,
    seq: AtomicU64,
    heap: Mutex<BinaryHeap<Waiting<P>>>,
    /// Hands deliveries that found a free worker to the starter task, which spawns them
    /// from inside the runtime (publishers need not be on it, and need not wake it per event).
    starter: OnceLock<mpsc::UnboundedSender<(Work, P)>>,
}

impl<P: Send + 'static> Workers<P> {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Workers {
            max: max.max(1),
            busy: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            heap: Mutex::new(BinaryHeap::new()),
            starter: OnceLock::new(),
        })
    }

    /// Deliveries waiting for a worker now.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    fn try_start(&self) -> bool {
        if self.busy.fetch_add(1, Ordering::SeqCst) < self.max {
            true
        } else {
            self.busy.fetch_sub(1, Ordering::SeqCst);
            false
        }
    }

    fn pop(&self) -> Option<Waiting<P>> {
        // The common case, nothing waiting, takes no lock.
        if self.queued.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let next = self.heap.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if next.is_some() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        next
    }

    /// Runs `work` on a free worker, or queues it for the next one by `priority`.
    pub(super) fn submit(self: &Arc<Self>, priority: i32, work: Work, hold: P) {
        if self.try_start() {
            self.start(work, hold);
            return;
        }
        let waiting = Waiting {
            priority,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            work,
            hold,
        };
        self.heap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(waiting);
        self.queued.fetch_add(1, Ordering::SeqCst);
        // A worker may have finished between the two: if one is free now, start it.
        if self.try_start() {
            tokio::spawn(self.clone().work(None));
        }
    }

    /// Starts a worker with `work`, through the starter task (started on first use).
    fn start(self: &Arc<Self>, work: Work, hold: P) {
        let starter = self.starter.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(Self::starter(Arc::downgrade(self), rx));
            tx
        });
        // The starter's runtime is gone: start the worker here.
        if let Err(mpsc::error::SendError(job)) = starter.send((work, hold)) {
            tokio::spawn(self.clone().work(Some(job)));
        }
    }

    /// Spawns a worker for each delivery handed over, until the workers are dropped.
    async fn starter(workers: Weak<Self>, mut rx: mpsc::UnboundedReceiver<(Work, P)>) {
        let mut jobs = Vec::with_capacity(64);
        while rx.recv_many(&mut jobs, 64).await > 0 {
            let Some(workers) = workers.upgrade() else {
                // Handed over just before the workers were dropped: run them anyway.
                for (work, hold) in jobs.drain(..) {
                    tokio::spawn(async move {
                        work.await;
                        drop(hold);
                    });
                }
                continue;
            };
            for job in jobs.drain(..) {
                tokio::spawn(workers.clone().work(Some(job)));
            }
        }
    }

    /// One worker: its first delivery, then the best waiting ones, until none waits.
    async fn work(self: Arc<Self>, first: Option<(Work, P)>) {
        let mut next = first.or_else(|| self.pop().map(|w| (w.work, w.hold)));
        loop {
            while let Some((work, hold)) = next.take() {
                let _report = work.await;
                drop(hold);
                next = self.pop().map(|w| (w.work, w.hold));
            }
            self.busy.fetch_sub(1, Ordering::SeqCst);
            // A publisher that found every worker busy pushed before this worker left:
            // take its place again (another worker may take the delivery first; then
            // this one leaves again and looks once more).
            if self.queued.load(Ordering::SeqCst) == 0 || !self.try_start() {
                return;
            }
            next = self.pop().map(|w| (w.work, w.hold));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priority_first_then_publish_order() {
        let mk = |priority, seq| Waiting {
            priority,
            seq,
            work: Box::pin(std::future::pending()) as Work,
            hold: (),
        };
        let mut heap = BinaryHeap::new();
        for (p, s) in [(0, 0), (5, 1), (0, 2), (5, 3), (-1, 4)] {
            heap.push(mk(p, s));
        }
        let order: Vec<(i32, u64)> = std::iter::from_fn(|| heap.pop())
            .map(|w| (w.priority, w.seq))
            .collect();
        assert_eq!(order, [(5, 1), (5, 3), (0, 0), (0, 2), (-1, 4)]);
    }
}
