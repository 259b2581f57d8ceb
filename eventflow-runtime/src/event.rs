//! Events, their payloads and the [`Envelope`] every published event travels in.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The unique id of a published event.
pub type EventId = uuid::Uuid;

/// A type that can be published: it has a stable, dot-separated name.
///
/// Derive it with `#[derive(Event)]`; `#[event(name = "user.created")]` sets the name,
/// otherwise the name is the type's name in snake case (`UserCreated` becomes
/// `user_created`). Publishing also needs `Serialize`, and a handler that takes the event
/// by value needs `Clone + Deserialize`.
///
/// ```
/// use eventflow_runtime::Event;
/// struct UserCreated;
/// impl Event for UserCreated { const NAME: &'static str = "user.created"; }
/// assert_eq!(UserCreated::NAME, "user.created");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an eventflow event",
    label = "this type does not implement `Event`",
    note = "add `#[derive(Event)]` (and `#[event(name = \"...\")]`) to the type's definition"
)]
pub trait Event: 'static {
    /// The event's name, as handlers' patterns see it.
    const NAME: &'static str;
}

/// An event's name: borrowed for typed events, shared for names given at run time.
#[derive(Clone)]
pub struct EventName(NameRepr);

#[derive(Clone)]
enum NameRepr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl EventName {
    /// A name known at compile time (no allocation).
    pub const fn from_static(name: &'static str) -> Self {
        EventName(NameRepr::Static(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            NameRepr::Static(s) => s,
            NameRepr::Shared(s) => s,
        }
    }
}

impl From<&str> for EventName {
    fn from(s: &str) -> Self {
        EventName(NameRepr::Shared(Arc::from(s)))
    }
}

impl From<String> for EventName {
    fn from(s: String) -> Self {
        EventName(NameRepr::Shared(Arc::from(s)))
    }
}

impl std::ops::Deref for EventName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for EventName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EventName {}

impl std::hash::Hash for EventName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for EventName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for EventName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type ToJson = fn(&(dyn Any + Send + Sync)) -> Result<Value, serde_json::Error>;

/// An event's data: the typed value itself within one process, or JSON.
///
/// A typed payload reaches typed handlers without being serialized: they receive a clone.
/// It is turned into JSON only when something needs JSON (an `Envelope` handler asking for
/// it, a dead letter being serialized, a network backend).
#[derive(Clone)]
pub struct Payload(PayloadRepr);

#[derive(Clone)]
enum PayloadRepr {
    Json(Arc<Value>),
    Typed {
        value: Arc<dyn Any + Send + Sync>,
        type_name: &'static str,
        to_json: ToJson,
    },
}

fn typed_to_json<T: Serialize + 'static>(
    v: &(dyn Any + Send + Sync),
) -> Result<Value, serde_json::Error> {
    match v.downcast_ref::<T>() {
        Some(v) => serde_json::to_value(v),
        None => Err(serde::ser::Error::custom("payload type mismatch")),
    }
}

impl Payload {
    /// A typed payload.
    pub fn typed<T: Serialize + Send + Sync + 'static>(value: T) -> Self {
        Payload(PayloadRepr::Typed {
            value: Arc::new(value),
            type_name: std::any::type_name::<T>(),
            to_json: typed_to_json::<T>,
        })
    }

    /// A JSON payload.
    pub fn json(value: Value) -> Self {
        Payload(PayloadRepr::Json(Arc::new(value)))
    }

    /// The payload as JSON (serializing a typed payload).
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        match &self.0 {
            PayloadRepr::Json(v) => Ok((**v).clone()),
            PayloadRepr::Typed { value, to_json, .. } => to_json(&**value),
        }
    }

    /// The typed value, if this payload holds a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        match &self.0 {
            PayloadRepr::Typed { value, .. } => value.downcast_ref::<T>(),
            PayloadRepr::Json(_) => None,
        }
    }

    /// The payload as a `T`: borrowed if it holds a `T`, deserialized from JSON otherwise.
    pub fn decode<T: DeserializeOwned + Clone + 'static>(
        &self,
    ) -> Result<Cow<'_, T>, serde_json::Error> {
        match &self.0 {
            PayloadRepr::Typed { value, to_json, .. } => match value.downcast_ref::<T>() {
                Some(v) => Ok(Cow::Borrowed(v)),
                None => serde_json::from_value(to_json(&**value)?).map(Cow::Owned),
            },
            PayloadRepr::Json(v) => T::deserialize(&**v).map(Cow::Owned),
        }
    }

    /// The Rust type held, or `"json"`.
    pub fn type_name(&self) -> &'static str {
        match &self.0 {
            PayloadRepr::Typed { type_name, .. } => type_name,
            PayloadRepr::Json(_) => "json",
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            PayloadRepr::Json(v) => write!(f, "Payload::Json({v})"),
            PayloadRepr::Typed { type_name, .. } => write!(f, "Payload::Typed({type_name})"),
        }
    }
}

/// Free-form string headers carried by an event and inherited by the events its handlers
/// publish (tenant, user, request id, trace context). Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Option<Arc<BTreeMap<String, String>>>);

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers(None)
    }

    /// The value of a header.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_ref()?.get(key).map(String::as_str)
    }

    /// Sets a header.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        Arc::make_mut(self.0.get_or_insert_with(Default::default)).insert(key.into(), value.into());
    }

    /// Adds every header of `other` that is not already set here.
    pub fn inherit(&mut self, other: &Headers) {
        if let Some(theirs) = &other.0 {
            if self.0.is_none() {
                self.0 = Some(theirs.clone());
                return;
            }
            for (k, v) in theirs.iter() {
                if self.get(k).is_none() {
                    self.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Iterates over the headers in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Removes a header, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let map = self.0.as_mut()?;
        if !map.contains_key(key) {
            return None;
        }
        Arc::make_mut(map).remove(key)
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k, v);
        }
        h
    }
}

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
            trace_id: crate::telemetry::random_u128(),
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
            timestamp: SystemTime::now(),
            attempt: 1,
            priority: 0,
            correlation_id: id,
            causation_id: None,
            headers: Headers::new(),
            trace: None,
        }
    }

    /// Sets the priority: higher runs first when deliveries wait for a handler's free slot.
    ///
    /// ```
    /// # use eventflow_runtime::{Envelope, Event};
    /// # #[derive(serde::Serialize)] struct Ping;
    /// # impl Event for Ping { const NAME: &'static str = "ping"; }
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
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
