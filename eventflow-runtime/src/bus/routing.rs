//! The routing table: the bus's handlers and the router of their patterns, swapped whole
//! when a handler is subscribed or unsubscribed on a running bus, so that publishers
//! never wait for a change.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::compiled::CompiledHandler;
use crate::pattern::Router;

/// One version of the routing table. A delivery keeps the version it was routed with.
pub(super) struct Routing {
    /// Higher priority first, then by name.
    pub(super) handlers: Vec<Arc<CompiledHandler>>,
    pub(super) router: Router,
}

impl Routing {
    /// The table of `handlers`, in the order they run.
    pub(super) fn new(mut handlers: Vec<Arc<CompiledHandler>>) -> Self {
        handlers.sort_by(|a, b| {
            b.options
                .priority
                .cmp(&a.options.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut router = Router::new();
        for (i, h) in handlers.iter().enumerate() {
            router.insert(&h.pattern, i);
        }
        Routing { handlers, router }
    }

    /// The handler named `name`.
    pub(super) fn named(&self, name: &str) -> Option<&Arc<CompiledHandler>> {
        self.handlers.iter().find(|h| &*h.name == name)
    }
}

/// Whether a handler still takes deliveries, and how many of its deliveries are running:
/// what `unsubscribe` waits on.
#[derive(Default)]
pub(super) struct Liveness {
    removed: AtomicBool,
    active: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// A delivery to a handler that is running; the handler's count goes down when dropped.
pub(super) struct Active<'a>(&'a Liveness);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        // Only a removal waits for idleness: with the flag read after the decrement (and
        // set before `remove_and_wait` reads the count), a waiter either sees the count
        // at zero or is woken here.
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.removed.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl Liveness {
    /// Enters a delivery, or `None` once the handler was unsubscribed. With the counter
    /// raised before the flag is read (and the flag set before the counter is read, in
    /// [`remove_and_wait`](Self::remove_and_wait)), no delivery starts after that returned.
    pub(super) fn enter(&self) -> Option<Active<'_>> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let guard = Active(self);
        (!self.removed.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Refuses new deliveries and waits until the running ones have finished.
    pub(super) async fn remove_and_wait(&self) {
        self.removed.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}
