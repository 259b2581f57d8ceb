//! What every network backend does the same way, whatever its broker: decoding an entry,
//! the poison rule, the dead letter of an entry that is not an envelope, and turning the
//! bus's [`DeliveryReport`] into what to do with the entry (acknowledge it, with retries
//! to schedule first, or leave it pending for another consumer).
//!
//! A backend's worker loop, per entry read from its broker:
//!
//! 1. [`decode_entry`] the stored text; on `Err`, store [`invalid_entry`]'s dead letter
//!    and acknowledge the entry (the worker goes on with the next one).
//! 2. [`redelivered`] with the broker's delivery count: the envelope's attempt grows by
//!    the redeliveries; past `max_deliveries` store its dead letter and acknowledge.
//! 3. Deliver it into the bus's [`DeliverySink`](super::DeliverySink) with
//!    [`Retries::ByBackend`](super::Retries::ByBackend).
//! 4. [`settle`] the report: [`Settlement::LeavePending`] leaves the entry for another
//!    consumer (shutdown cut the delivery short); [`Settlement::Ack`] acknowledges it, in
//!    one atomic step with storing each [`ScheduledRetry`] as a delayed entry for its one
//!    handler.

use std::time::{Duration, SystemTime};

use crate::dead_letter::DeadLetter;
use crate::delivery::{DeliveryReport, OutcomeStatus};
use crate::error::HandlerErrorKind;
use crate::event::{Envelope, EventName, Payload};

/// The event name of the dead letter made for an entry that is not a valid envelope.
pub const INVALID_ENTRY_EVENT: &str = "eventflow.invalid_entry";

/// How deeply arrays and objects may nest in an entry's text, the envelope's own object
/// included: what [`decode_entry`] reads (serde_json's recursion limit). A backend checks
/// an entry with [`nesting_exceeds`] before it stores it, so that nothing is published
/// that no worker can read.
pub const MAX_ENTRY_NESTING: usize = 127;

/// The nesting depth of JSON `text` when it is over `max`, found in one pass over its
/// bytes without parsing it (strings and their escapes are skipped); `None` when it is
/// within `max`.
pub fn nesting_exceeds(text: &str, max: usize) -> Option<usize> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    (deepest > max).then_some(deepest)
}

/// Reads an entry's stored envelope (JSON): the envelope, or why it is not one.
pub fn decode_entry(text: &str) -> Result<Envelope, String> {
    serde_json::from_str(text).map_err(|e| format!("the entry is not a valid envelope: {e}"))
}

/// The dead letter of an entry that is not a valid envelope: under the handler name `""`,
/// as an event [`INVALID_ENTRY_EVENT`] whose payload holds the broker's entry id and the
/// raw fields, with `reason` as its error.
pub fn invalid_entry(
    entry_id: &str,
    fields: serde_json::Value,
    reason: impl std::fmt::Display,
    delivered: u32,
) -> DeadLetter {
    let mut envelope = Envelope::with_payload(
        EventName::from(INVALID_ENTRY_EVENT),
        Payload::json(serde_json::json!({"stream_id": entry_id, "fields": fields })),
    );
    envelope.attempt = delivered.max(1);
    let now = SystemTime::now();
    DeadLetter::new(
        "",
        envelope,
        reason,
        HandlerErrorKind::Payload,
        delivered.max(1),
        now,
        now,
    )
}

/// The poison rule. `delivered` is the broker's delivery count of the entry (1 the first
/// time). The envelope's attempt grows by the redeliveries (saturating: a count or an
/// attempt read from the broker can be anything). Past `max_deliveries` (its handler
/// crashed or hung the worker each time) the entry's dead letter comes back as `Err`, for
/// `handler` (`*` when the entry was for every matching handler).
pub fn redelivered(
    envelope: &mut Envelope,
    handler: Option<&str>,
    delivered: u32,
    max_deliveries: u32,
) -> Result<(), Box<DeadLetter>> {
    envelope.attempt = envelope
        .attempt
        .max(1)
        .saturating_add(delivered.saturating_sub(1));
    if delivered <= max_deliveries {
        return Ok(());
    }
    let now = SystemTime::now();
    Err(Box::new(DeadLetter::new(
        handler.unwrap_or("*"),
        envelope.clone(),
        format!(
            "delivered {delivered} times without being acknowledged (a worker crashed or hung while handling it)"
        ),
        HandlerErrorKind::Failed,
        delivered,
        now,
        now,
    )))
}

/// An entry no handler of the worker that read it takes (its event matches none, or it is
/// for a handler this worker lacks; see [`DeliverySink::allows_unhandled`](super::DeliverySink::allows_unhandled)).
/// `None`: leave it pending for a worker of the group that has the handler. On its
/// `max_deliveries`-th delivery: its dead letter, saying that no worker took it.
pub fn unrouted(
    envelope: &Envelope,
    handler: Option<&str>,
    delivered: u32,
    max_deliveries: u32,
) -> Option<Box<DeadLetter>> {
    if delivered < max_deliveries {
        return None;
    }
    let reason = match handler {
        Some(h) => {
            format!("delivered {delivered} times, and no worker that read it has the handler `{h}`")
        }
        None => format!(
            "delivered {delivered} times, and no handler of the workers that read it matches `{}`",
            envelope.name
        ),
    };
    let now = SystemTime::now();
    Some(Box::new(DeadLetter::new(
        handler.unwrap_or("*"),
        envelope.clone(),
        reason,
        HandlerErrorKind::Failed,
        delivered,
        now,
        now,
    )))
}

/// A retry the backend stores as a delayed entry for one handler.
#[derive(Clone, Debug)]
pub struct ScheduledRetry {
    /// The wait before it is due.
    pub delay: Duration,
    /// The handler it is for.
    pub handler: String,
    /// The envelope, with its next attempt number.
    pub envelope: Envelope,
}

/// What to do with a broker entry once its delivery report is in.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Settlement {
    /// Acknowledge the entry, storing these retries first (in the same atomic step).
    Ack(Vec<ScheduledRetry>),
    /// Shutdown cut the delivery short: leave the entry pending for another consumer.
    LeavePending,
}

/// Turns the bus's report for `envelope` into a [`Settlement`]: every handler's outcome
/// is final (succeeded, filtered, dead-lettered) or a retry for the backend to schedule;
/// a cancelled delivery, and one whose dead letter could not be stored, is left pending
/// (delivered again later, until its dead letter is stored).
pub fn settle(envelope: &Envelope, report: &DeliveryReport) -> Settlement {
    if report.cancelled
        || report.outcomes.iter().any(|o| {
            matches!(
                o.status,
                OutcomeStatus::Cancelled | OutcomeStatus::DeadLetterNotStored { .. }
            )
        })
    {
        return Settlement::LeavePending;
    }
    let retries = report
        .outcomes
        .iter()
        .filter_map(|o| match &o.status {
            OutcomeStatus::RetryScheduled { delay, .. } => {
                let mut next = envelope.clone();
                next.attempt = o.attempts.saturating_add(1);
                Some(ScheduledRetry {
                    delay: *delay,
                    handler: o.handler.to_string(),
                    envelope: next,
                })
            }
            _ => None,
        })
        .collect();
    Settlement::Ack(retries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::HandlerOutcome;
    use crate::error::HandlerError;

    fn env() -> Envelope {
        Envelope::with_payload("a.b".into(), Payload::json(serde_json::json!({})))
    }

    /// The publish-time check and the worker's reading agree at every depth around the
    /// limit, so nothing is published that a worker cannot read.
    #[test]
    fn the_nesting_check_agrees_with_what_a_worker_reads() {
        for n in [1usize, 100, 124, 125, 126, 127, 128, 129, 200] {
            let mut v = serde_json::json!(1);
            for _ in 0..n {
                v = serde_json::json!([v]);
            }
            let text =
                serde_json::to_string(&Envelope::with_payload("a.b".into(), Payload::json(v)))
                    .expect("serializes");
            let readable = decode_entry(&text).is_ok();
            let refused = nesting_exceeds(&text, MAX_ENTRY_NESTING).is_some();
            assert_eq!(readable, !refused, "payload nested {n} deep");
        }
        assert_eq!(nesting_exceeds(r#"{"a": "[[[[[", "b": "\\\"{"}"#, 1), None);
        assert_eq!(nesting_exceeds("[[1]]", 1), Some(2));
    }

    #[test]
    fn poison_rule_counts_redeliveries_and_saturates() {
        let mut e = env();
        assert!(redelivered(&mut e, None, 1, 5).is_ok());
        assert_eq!(e.attempt, 1);
        assert!(redelivered(&mut e, None, 3, 5).is_ok());
        assert_eq!(e.attempt, 3);
        e.attempt = u32::MAX;
        let letter = redelivered(&mut e, Some("h"), 6, 5).expect_err("past max_deliveries");
        assert_eq!(e.attempt, u32::MAX);
        assert_eq!(letter.handler, "h");
        assert_eq!(letter.attempts, 6);
    }

    #[test]
    fn settle_turns_retries_into_scheduled_entries_and_cancellation_into_pending() {
        let e = env();
        let report = DeliveryReport {
            event_id: e.id,
            event: e.name.clone(),
            outcomes: vec![
                HandlerOutcome {
                    handler: "ok".into(),
                    attempts: 1,
                    status: OutcomeStatus::Succeeded,
                    value: None,
                },
                HandlerOutcome {
                    handler: "again".into(),
                    attempts: 2,
                    status: OutcomeStatus::RetryScheduled {
                        delay: Duration::from_millis(300),
                        error: HandlerError::msg("boom"),
                    },
                    value: None,
                },
            ]
            .into(),
            cancelled: false,
        };
        match settle(&e, &report) {
            Settlement::Ack(r) => {
                assert_eq!(r.len(), 1);
                assert_eq!(r[0].handler, "again");
                assert_eq!(r[0].envelope.attempt, 3);
                assert_eq!(r[0].delay, Duration::from_millis(300));
            }
            other => panic!("expected an ack, got {other:?}"),
        }
        let cancelled = DeliveryReport {
            cancelled: true,
            ..report
        };
        assert!(matches!(settle(&e, &cancelled), Settlement::LeavePending));
    }

    #[test]
    fn invalid_entries_become_dead_letters_with_their_fields() {
        assert!(decode_entry("not json").is_err());
        let l = invalid_entry("1-0", serde_json::json!({"x": "y"}), "bad", 2);
        assert_eq!(l.handler, "");
        assert_eq!(l.envelope.name, INVALID_ENTRY_EVENT);
        assert_eq!(l.error_kind, HandlerErrorKind::Payload);
        assert_eq!(
            l.envelope
                .payload_json()
                .ok()
                .and_then(|v| v["stream_id"].as_str().map(str::to_owned))
                .as_deref(),
            Some("1-0")
        );
    }
}
