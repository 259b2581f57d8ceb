//! The envelope every published event travels in, and its wire form.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Event, EventId, EventName, Headers, Payload, TraceContext};
use crate::util::millis;

/// A published event with its metadata.
///
/// Serializes to JSON with the payload as JSON and the timestamp in milliseconds since the
/// Unix epoch.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Unique id of this event.
    pub id: EventId,
    /// The event's name (`user.created`).
    pub name: EventName,
    /// The event's data.
    pub payload: Payload,
    /// When the event was published.
    pub timestamp: SystemTime,
    /// Which attempt this delivery is, starting at 1.
    pub attempt: u32,
    /// Higher runs first when deliveries wait for a handler's free slot.
    pub priority: i32,
    /// The id shared by every event of one causal chain (the first event's id).
    pub correlation_id: EventId,
    /// The id of the event whose handler published this one.
    pub causation_id: Option<EventId>,
    /// Free-form headers, inherited by events published from handlers.
    pub headers: Headers,
    /// The trace the event belongs to; set when it is published.
    pub trace: Option<TraceContext>,
    /// A bound on each handler's attempts for this event, over the handler's own
    /// (`PublishOptions::timeout`).
    pub timeout: Option<Duration>,
    /// Attempts in all for this event, over each handler's retry policy
    /// (`PublishOptions::max_attempts`).
    pub max_attempts: Option<u32>,
    /// For a request ([`EventBus::request`](crate::EventBus::request)) carried by a
    /// network backend: where the asking process waits for the answer (an address of the
    /// backend's, such as a reply stream's key).
    pub reply_to: Option<String>,
}

impl Envelope {
    /// A new envelope for a typed event.
    pub fn new<E: Event + Serialize + Send + Sync>(event: E) -> Self {
        Self::with_payload(EventName::from_static(E::NAME), Payload::typed(event))
    }

    /// A new envelope with the given name and payload; the name is not validated here.
    pub fn with_payload(name: EventName, payload: Payload) -> Self {
        let id = uuid::Uuid::new_v4();
        Envelope {
            id,
            name,
            payload,
            timestamp: crate::util::wall_now(),
            attempt: 1,
            priority: 0,
            correlation_id: id,
            causation_id: None,
            headers: Headers::new(),
            trace: None,
            timeout: None,
            max_attempts: None,
            reply_to: None,
        }
    }

    /// Sets the priority: higher runs first when deliveries wait for a handler's free slot.
    ///
    /// ```
    /// # use eventflow_runtime::{Envelope, Event};
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl Event for Ping {const NAME: &'static str = "ping"; }
    /// let env = Envelope::new(Ping).with_priority(10).with_header("tenant", "acme");
    /// assert_eq!((env.priority, env.headers.get("tenant")), (10, Some("acme")));
    /// ```
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// The payload as JSON.
    pub fn payload_json(&self) -> Result<Value, serde_json::Error> {
        self.payload.to_json()
    }

    /// Makes this envelope a consequence of `parent`: same correlation id, the parent as
    /// causation, the parent's headers where this one has none of its own, and the
    /// parent's trace.
    pub fn caused_by(mut self, parent: &Envelope) -> Self {
        self.correlation_id = parent.correlation_id;
        self.causation_id = Some(parent.id);
        self.headers.inherit(&parent.headers);
        if self.trace.is_none() {
            self.trace = parent.trace;
        }
        self
    }
}

#[derive(Serialize, Deserialize)]
struct WireEnvelope<'a> {
    id: EventId,
    name: Cow<'a, str>,
    payload: Value,
    timestamp_ms: u64,
    attempt: u32,
    #[serde(default)]
    priority: i32,
    correlation_id: EventId,
    #[serde(default)]
    causation_id: Option<EventId>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<Cow<'a, str>>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let payload = self.payload.to_json().map_err(serde::ser::Error::custom)?;
        WireEnvelope {
            id: self.id,
            name: Cow::Borrowed(self.name.as_str()),
            payload,
            timestamp_ms: millis(self.timestamp),
            attempt: self.attempt,
            priority: self.priority,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain(
                    self.trace
                        .map(|t| (TraceContext::HEADER.to_owned(), t.to_traceparent())),
                )
                .collect(),
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            max_attempts: self.max_attempts,
            reply_to: self.reply_to.as_deref().map(Cow::Borrowed),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireEnvelope::deserialize(d)?;
        let name = w.name.into_owned();
        if let Err(reason) = crate::pattern::validate_name(&name) {
            return Err(serde::de::Error::custom(format!(
                "invalid event name `{name}`: {reason}"
            )));
        }
        let mut headers: Headers = w.headers.into_iter().collect();
        let trace = headers
            .remove(TraceContext::HEADER)
            .and_then(|v| TraceContext::parse(&v));
        Ok(Envelope {
            id: w.id,
            name: EventName::from(name),
            payload: Payload::json(w.payload),
            timestamp: UNIX_EPOCH + Duration::from_millis(w.timestamp_ms),
            attempt: w.attempt.max(1),
            priority: w.priority,
            correlation_id: w.correlation_id,
            causation_id: w.causation_id,
            headers,
            trace,
            timeout: w.timeout_ms.map(Duration::from_millis),
            // At least the first attempt, whatever the entry says.
            max_attempts: w.max_attempts.map(|n| n.max(1)),
            reply_to: w.reply_to.map(Cow::into_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl Event for Ping {
        const NAME: &'static str = "ping";
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Other {
        n: u32,
    }

    #[test]
    fn typed_payload_is_borrowed_without_serializing() {
        let env = Envelope::new(Ping { n: 3 });
        assert!(matches!(
            env.payload.decode::<Ping>().unwrap(),
            Cow::Borrowed(_)
        ));
        // A different type with the same shape goes through JSON.
        assert_eq!(
            env.payload.decode::<Other>().unwrap().into_owned(),
            Other { n: 3 }
        );
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let mut env = Envelope::new(Ping { n: 7 });
        env.headers.insert("tenant", "acme");
        env.priority = 4;
        let text = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.id, env.id);
        assert_eq!(back.name, "ping");
        assert_eq!(back.priority, 4);
        assert_eq!(back.headers.get("tenant"), Some("acme"));
        assert_eq!(
            back.payload.decode::<Ping>().unwrap().into_owned(),
            Ping { n: 7 }
        );
        assert_eq!(millis(back.timestamp), millis(env.timestamp));
    }

    #[test]
    fn malformed_envelopes_are_rejected() {
        assert!(serde_json::from_str::<Envelope>("not json").is_err());
        assert!(serde_json::from_str::<Envelope>(r#"{"id":"x"}"#).is_err());
        let bad_name = serde_json::json!({
            "id": uuid::Uuid::new_v4(), "name": "Bad Name", "payload": null, "timestamp_ms": 0,
            "attempt": 1, "correlation_id": uuid::Uuid::new_v4()
        });
        let err = serde_json::from_value::<Envelope>(bad_name).unwrap_err();
        assert!(err.to_string().contains("invalid event name"), "{err}");
    }

    #[test]
    fn caused_by_propagates_correlation_and_headers() {
        let mut parent = Envelope::new(Ping { n: 1 });
        parent.headers.insert("request-id", "r1");
        let child = Envelope::new(Ping { n: 2 }).caused_by(&parent);
        assert_eq!(child.correlation_id, parent.correlation_id);
        assert_eq!(child.causation_id, Some(parent.id));
        assert_eq!(child.headers.get("request-id"), Some("r1"));
    }
}
