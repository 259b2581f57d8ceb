//! An event's data: the typed value within one process, or JSON.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
