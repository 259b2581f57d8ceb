//! Events waiting for their time, as a backend lists them: delayed publishes (and, on a
//! backend that keeps retries in the broker, scheduled retries).

use std::time::SystemTime;

use crate::event::EventId;

/// The most delayed events one page holds.
pub const MAX_DELAYED_PAGE: usize = 1000;

/// One event waiting for its time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelayedEvent {
    /// The event's id.
    pub id: EventId,
    /// The event's name.
    pub name: String,
    /// When it is due.
    pub due: SystemTime,
    /// The one handler it is for (a scheduled retry), or none (every handler).
    pub handler: Option<String>,
    /// Its priority.
    pub priority: i32,
}

impl DelayedEvent {
    /// An event due at `due`, for every handler.
    pub fn new(id: EventId, name: impl Into<String>, due: SystemTime) -> Self {
        DelayedEvent {
            id,
            name: name.into(),
            due,
            handler: None,
            priority: 0,
        }
    }

    /// For one handler only.
    pub fn for_handler(mut self, handler: Option<String>) -> Self {
        self.handler = handler;
        self
    }

    /// With this priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
}

/// One page of delayed events, soonest first.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DelayedPage {
    /// The events.
    pub events: Vec<DelayedEvent>,
    /// The cursor of the next page, or none when this is the last.
    pub next: Option<String>,
}

impl DelayedPage {
    /// A page.
    pub fn new(events: Vec<DelayedEvent>, next: Option<String>) -> Self {
        DelayedPage { events, next }
    }
}
