//! The sink backends deliver envelopes into.

use std::sync::{Arc, Weak};

use super::Inner;
use super::deliver::{OwnTask, deliver_routed};
use crate::backend::{Delivery, DeliverySink};
use crate::delivery::{DeliveryReport, Outcomes};
use crate::util::BoxFuture;

pub(super) struct BusSink(pub(super) Weak<Inner>);

impl DeliverySink for BusSink {
    fn allows_unhandled(&self) -> bool {
        self.0.upgrade().is_some_and(|inner| inner.allow_unhandled)
    }

    /// Deliveries coming from the backend run on tasks of their own; shutdown cancels the
    /// ones still running when its timeout ends. (A `dispatch` runs in its caller's future,
    /// which the caller owns: shutdown reports it but does not cancel it.)
    fn deliver(&self, delivery: Delivery) -> BoxFuture<'static, DeliveryReport> {
        let Delivery {
            envelope,
            handler,
            retries,
        } = delivery;
        match self.0.upgrade() {
            Some(inner) => {
                let cancel = inner.cancel.clone();
                let (id, name) = (envelope.id, envelope.name.clone());
                let routing = inner.routing.load_full();
                let targets: Arc<[usize]> = match &handler {
                    None => routing.router.lookup(&envelope.name),
                    Some(h) => routing
                        .handlers
                        .iter()
                        .position(|s| *s.name == **h)
                        .into_iter()
                        .collect(),
                };
                let work = deliver_routed(inner, envelope, routing, targets, OwnTask::Yes, retries);
                Box::pin(async move {
                    tokio::select! {
                        biased;
                        report = work => report,
                        _ = cancel.cancelled() => DeliveryReport {event_id: id, event: name, outcomes: Outcomes::new(), cancelled: true },
                    }
                })
            }
            None => Box::pin(std::future::ready(DeliveryReport {
                event_id: envelope.id,
                event: envelope.name,
                outcomes: Outcomes::new(),
                cancelled: true,
            })),
        }
    }
}
