//! Events, their payloads and the [`Envelope`] every published event travels in.

use std::fmt;
use std::sync::Arc;

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
/// impl Event for UserCreated {const NAME: &'static str = "user.created"; }
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

mod envelope;
mod headers;
mod options;
mod payload;
mod trace;

pub use envelope::Envelope;
pub use headers::Headers;
pub use options::PublishOptions;
pub use payload::Payload;
pub use trace::TraceContext;
