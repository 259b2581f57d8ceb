//! What a delivery reports: each handler's outcome for one event, and what a retried
//! dead letter did. Backends settle broker entries from these reports.

use std::sync::Arc;
use std::time::Duration;

use crate::error::HandlerError;
use crate::event::{EventId, EventName};

/// How one handler's delivery of one event ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutcomeStatus {
    /// An attempt succeeded.
    Succeeded,
    /// The handler gave up; the event is in dead letters under `dead_letter_id`.
    DeadLettered {
        /// The dead letter's id.
        dead_letter_id: uuid::Uuid,
        /// The last attempt's error.
        error: HandlerError,
    },
    /// The handler gave up, but its dead letter could not be stored (the dead-letter store
    /// refused the write or could not be reached). The event is not done with: a network
    /// backend leaves its entry pending, to be delivered again (here or by another
    /// worker) until the dead letter is stored.
    DeadLetterNotStored {
        /// The last attempt's error.
        error: HandlerError,
        /// Why the dead letter could not be stored.
        store_error: String,
    },
    /// The handler's filter rejected the event; it was not delivered to it.
    Filtered,
    /// The delivery was cancelled by shutdown before it finished.
    Cancelled,
    /// The attempt failed and the backend schedules the next one after `delay` (backends
    /// that retry through the broker, see [`Retries::ByBackend`](crate::Retries::ByBackend)).
    RetryScheduled {
        /// The wait before the next attempt.
        delay: Duration,
        /// The failed attempt's error.
        error: HandlerError,
    },
}

/// The outcome of one handler for one event.
#[derive(Debug)]
pub struct HandlerOutcome {
    /// The handler's name.
    pub handler: Arc<str>,
    /// Attempts made.
    pub attempts: u32,
    /// How it ended.
    pub status: OutcomeStatus,
}

impl HandlerOutcome {
    /// Whether the handler succeeded.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, OutcomeStatus::Succeeded)
    }

    /// Whether the handler's filter rejected the event.
    pub fn is_filtered(&self) -> bool {
        matches!(self.status, OutcomeStatus::Filtered)
    }

    /// The final error, if the handler gave up.
    pub fn error(&self) -> Option<&HandlerError> {
        match &self.status {
            OutcomeStatus::DeadLettered { error, .. }
            | OutcomeStatus::DeadLetterNotStored { error, .. }
            | OutcomeStatus::RetryScheduled { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Every handler's outcome for one event, in the order the handlers ran.
#[derive(Debug)]
pub struct DeliveryReport {
    /// The event's id.
    pub event_id: EventId,
    /// The event's name.
    pub event: EventName,
    /// One entry per matching handler.
    pub outcomes: Vec<HandlerOutcome>,
    /// Shutdown cancelled the delivery before every handler finished.
    pub cancelled: bool,
}

impl DeliveryReport {
    /// Whether every handler succeeded (or filtered the event out).
    pub fn is_success(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| o.succeeded() || o.is_filtered())
    }

    /// The outcome of the named handler.
    pub fn outcome(&self, handler: &str) -> Option<&HandlerOutcome> {
        self.outcomes.iter().find(|o| &*o.handler == handler)
    }

    /// The handlers that did not succeed (filtered ones excluded).
    pub fn failures(&self) -> impl Iterator<Item = &HandlerOutcome> {
        self.outcomes
            .iter()
            .filter(|o| !o.succeeded() && !o.is_filtered())
    }
}

/// What [`EventBus::retry_dead_letter`](crate::EventBus::retry_dead_letter) did.
#[derive(Debug)]
pub enum Redelivery {
    /// Delivered in this process; the handler's outcome.
    Done(HandlerOutcome),
    /// Queued in the backend for a worker that has the handler.
    Queued,
}

impl Redelivery {
    /// The outcome, when it was delivered here.
    pub fn outcome(&self) -> Option<&HandlerOutcome> {
        match self {
            Redelivery::Done(o) => Some(o),
            Redelivery::Queued => None,
        }
    }
}
