//! The W3C trace context an event carries.

/// The W3C trace context an event carries (`traceparent`): the trace it belongs to and the
/// span that published it (or, inside a handler, the span of the attempt running it).
///
/// On the wire it travels as the `traceparent` header, so a Redis worker's spans carry the
/// publisher's trace id and name the publisher's span as their parent. An event published
/// with a `traceparent` header of its own (taken from an incoming HTTP request, say)
/// continues that trace.
///
/// ```
/// use eventflow_runtime::TraceContext;
/// let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(t.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(t.parent_id, 0x00f067aa0ba902b7);
/// assert!(t.sampled);
/// assert_eq!(t.to_traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace's id (never zero).
    pub trace_id: u128,
    /// The id of the span this event descends from (never zero).
    pub parent_id: u64,
    /// The `sampled` flag.
    pub sampled: bool,
}

impl TraceContext {
    /// The header the context travels in.
    pub const HEADER: &'static str = "traceparent";

    /// Parses a version-00 `traceparent` value; `None` when it is not one (W3C: an invalid
    /// value is ignored and a new trace starts).
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            (s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then_some(())
        };
        hex(version, 2)?;
        hex(trace, 32)?;
        hex(parent, 16)?;
        hex(flags, 2)?;
        // Version ff is invalid; version 00 has exactly four fields.
        if version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(TraceContext {
            trace_id,
            parent_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.parent_id,
            u8::from(self.sampled)
        )
    }

    /// A new trace whose root is the span `span_id`.
    pub(crate) fn root(span_id: u64) -> TraceContext {
        TraceContext {
            trace_id: crate::util::random_u128(),
            parent_id: span_id,
            sampled: true,
        }
    }

    /// The same trace, descending from the span `span_id`.
    pub(crate) fn child(self, span_id: u64) -> TraceContext {
        TraceContext {
            parent_id: span_id,
            ..self
        }
    }
}
