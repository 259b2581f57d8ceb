//! The sink backends deliver envelopes into.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use tokio_util::sync::WaitForCancellationFutureOwned;

use super::Inner;
use super::deliver::{OwnTask, deliver_routed};
use crate::backend::{Delivery, DeliverySink};
use crate::delivery::{DeliveryReport, Outcomes};
use crate::event::{EventId, EventName};
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
                Box::pin(UntilCancelled {
                    work,
                    cancelled: cancel.cancelled_owned(),
                    id,
                    name: Some(name),
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

pin_project_lite::pin_project! {
    /// A delivery that ends, reported cancelled, when the bus's shutdown cancels it. The
    /// delivery is polled first and held in place (a `select!` would move it once more).
    struct UntilCancelled<F> {
        #[pin]
        work: F,
        #[pin]
        cancelled: WaitForCancellationFutureOwned,
        id: EventId,
        name: Option<EventName>,
    }
}

impl<F: Future<Output = DeliveryReport>> Future for UntilCancelled<F> {
    type Output = DeliveryReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DeliveryReport> {
        let this = self.project();
        if let Poll::Ready(report) = this.work.poll(cx) {
            return Poll::Ready(report);
        }
        if this.cancelled.poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.name.take() {
            Some(event) => Poll::Ready(DeliveryReport {
                event_id: *this.id,
                event,
                outcomes: Outcomes::new(),
                cancelled: true,
            }),
            // Polled again after it was ready, which a caller must not do.
            None => Poll::Pending,
        }
    }
}
