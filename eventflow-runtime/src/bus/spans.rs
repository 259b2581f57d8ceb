//! The tracing spans of publishes, deliveries and attempts, and the trace context they
//! give each event.

use crate::event::{Envelope, TraceContext};
use crate::util::{Hex, random_u64};

/// Gives `envelope` a new span of its trace (a new trace when it has none): returns the
/// trace id, the new span's id and the trace context it descends from.
#[inline]
pub(super) fn descend(envelope: &mut Envelope) -> (u128, u64, Option<TraceContext>) {
    let span_id = random_u64();
    let parent = envelope.trace;
    let trace = match parent {
        Some(p) => p.child(span_id),
        None => TraceContext::root(span_id),
    };
    envelope.trace = Some(trace);
    (trace.trace_id, span_id, parent)
}

/// The `parent_id` field of a span made by [`descend`].
#[inline]
pub(super) fn parent_id(
    parent: Option<TraceContext>,
) -> Option<tracing::field::DisplayValue<Hex<u64>>> {
    parent.map(|p| tracing::field::display(Hex(p.parent_id)))
}
