//! What a delivery reports: each handler's outcome for one event (with the value it
//! returned), what a retried dead letter did, and the reply a request waits for. Backends
//! settle broker entries from these reports.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{EventError, HandlerError};
use crate::event::{EventId, EventName};

mod outcomes;

pub use outcomes::{IntoIter as OutcomesIntoIter, Outcomes};

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
    /// What the handler returned, as JSON, when it succeeded with a value (`None` for a
    /// handler returning `()`, `None` or JSON `null`).
    pub value: Option<serde_json::Value>,
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

    /// What the handler returned, as JSON (untyped use).
    pub fn value_json(&self) -> Option<&serde_json::Value> {
        self.value.as_ref()
    }

    /// What the handler returned, as a `T`: an error when it failed, returned nothing or
    /// returned something that is not a `T`.
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, ReplyError> {
        if let Some(e) = self.error() {
            return Err(ReplyError::Failed {
                handler: self.handler.to_string(),
                error: e.to_string(),
            });
        }
        if !self.succeeded() {
            return Err(ReplyError::NoValue {
                handler: self.handler.to_string(),
            });
        }
        let Some(v) = &self.value else {
            return Err(ReplyError::NoValue {
                handler: self.handler.to_string(),
            });
        };
        decode_value(&self.handler, v)
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
    pub outcomes: Outcomes,
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

    /// What the named handler returned, as a `T` (see [`HandlerOutcome::value`]).
    ///
    /// ```
    /// # use eventflow_runtime::*;
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Quote { qty: u32 }
    /// # impl Event for Quote { const NAME: &'static str = "quote"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = EventBus::builder()
    ///     .handler(Handler::replying("price", "quote", |q: Quote, _ctx| async move {
    ///         Ok::<u32, HandlerError>(q.qty * 3)
    ///     }))
    ///     .build()
    ///     .await?;
    /// let report = bus.dispatch(Quote { qty: 2 }).await?;
    /// assert_eq!(report.value::<u32>("price")?, 6);
    /// # Ok(()) }
    /// ```
    pub fn value<T: DeserializeOwned>(&self, handler: &str) -> Result<T, ReplyError> {
        match self.outcome(handler) {
            Some(o) => o.value(),
            None => Err(ReplyError::NoHandler {
                event: self.event.to_string(),
            }),
        }
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

fn decode_value<T: DeserializeOwned>(
    handler: &str,
    v: &serde_json::Value,
) -> Result<T, ReplyError> {
    T::deserialize(v).map_err(|e| ReplyError::WrongType {
        handler: handler.to_owned(),
        expected: std::any::type_name::<T>(),
        error: e.to_string(),
    })
}

/// What one attempt of a handler ends with: its value as JSON (`None` for no value), or
/// its error.
pub type HandlerResult = Result<Option<serde_json::Value>, HandlerError>;

/// What a handler's return value turns into: `()` (no value), `Result<(), E>`, or
/// `Result<T, E>` for any `T: Serialize` (the value, as JSON, in the report and in a
/// request's reply). `E` converts into [`HandlerError`].
#[diagnostic::on_unimplemented(
    message = "a handler returns `()`, `Result<(), E>` or `Result<T, E>` with `T: Serialize`, not `{Self}`",
    label = "not a handler's return type",
    note = "return `Result<T, HandlerError>` (or any error that converts into `HandlerError`)"
)]
pub trait IntoReply {
    /// The value as JSON (`None` for no value), or the handler's error.
    fn into_reply(self) -> HandlerResult;
}

impl IntoReply for () {
    #[inline]
    fn into_reply(self) -> HandlerResult {
        Ok(None)
    }
}

impl<T: Serialize, E: Into<HandlerError>> IntoReply for Result<T, E> {
    #[inline]
    fn into_reply(self) -> HandlerResult {
        match self {
            Ok(v) => to_reply_value(&v),
            Err(e) => Err(e.into()),
        }
    }
}

/// A handler's value as JSON; `()` and `null` are no value. A value that does not serialize
/// is a permanent error naming its type.
#[inline]
pub(crate) fn to_reply_value<T: Serialize + ?Sized>(v: &T) -> HandlerResult {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(HandlerError::permanent_msg(format!(
            "the handler's value of type `{}` does not serialize: {e}",
            std::any::type_name::<T>()
        ))),
    }
}

/// The answer to a request, as it travels from the process that handled the event back to
/// the one that asked ([`EventBus::request`](crate::EventBus::request)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's event id.
    pub event_id: EventId,
    /// The handler that answered, when one did.
    #[serde(default)]
    pub handler: Option<String>,
    /// The value it returned (`None`: it returned nothing).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    /// Why there is no value: the handler gave up, or no single handler answered.
    #[serde(default)]
    pub error: Option<String>,
}

impl Reply {
    /// The reply a delivery's report makes: the one answering handler's value or error.
    /// `None` while the answer is not final (its retry is scheduled, or shutdown cut the
    /// delivery short), so a later delivery answers.
    pub fn from_report(report: &DeliveryReport) -> Option<Reply> {
        if report.cancelled {
            return None;
        }
        let answering: Vec<&HandlerOutcome> = report
            .outcomes
            .iter()
            .filter(|o| !o.is_filtered())
            .collect();
        let mut reply = Reply {
            event_id: report.event_id,
            handler: None,
            value: None,
            error: None,
        };
        match answering.as_slice() {
            [] => {
                reply.error = Some(format!("no handler answered `{}`", report.event));
            }
            [one] => {
                reply.handler = Some(one.handler.to_string());
                match &one.status {
                    OutcomeStatus::Succeeded => reply.value = one.value.clone(),
                    OutcomeStatus::RetryScheduled { .. } | OutcomeStatus::Cancelled => return None,
                    OutcomeStatus::DeadLetterNotStored { .. } => return None,
                    _ => {
                        reply.error = Some(match one.error() {
                            Some(e) => e.to_string(),
                            None => "the handler did not answer".to_owned(),
                        })
                    }
                }
            }
            many => {
                let names: Vec<&str> = many.iter().map(|o| &*o.handler).collect();
                reply.error = Some(format!(
                    "more than one handler answers `{}`: {}",
                    report.event,
                    names.join(", ")
                ));
            }
        }
        Some(reply)
    }

    /// The value as a `T`, or why there is none.
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, ReplyError> {
        let handler = self.handler.clone().unwrap_or_default();
        if let Some(error) = &self.error {
            return Err(ReplyError::Failed {
                handler,
                error: error.clone(),
            });
        }
        match &self.value {
            Some(v) => decode_value(&handler, v),
            None => decode_value(&handler, &serde_json::Value::Null)
                .map_err(|_| ReplyError::NoValue { handler }),
        }
    }
}

/// Why a handler's value, or a request's answer, is not there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No handler takes the event (or the named handler is not among its handlers).
    #[error("no handler answers `{event}`")]
    NoHandler {
        /// The event's name.
        event: String,
    },
    /// A request needs exactly one handler; more match.
    #[error("more than one handler answers `{event}`: {}", handlers.join(", "))]
    MoreThanOne {
        /// The event's name.
        event: String,
        /// The handlers that match.
        handlers: Vec<String>,
    },
    /// The handler gave up (or the answer says why there is none).
    #[error("handler `{handler}` failed: {error}")]
    Failed {
        /// The handler.
        handler: String,
        /// Its last error.
        error: String,
    },
    /// The handler succeeded without a value.
    #[error("handler `{handler}` returned no value")]
    NoValue {
        /// The handler.
        handler: String,
    },
    /// The value is not the type asked for.
    #[error("handler `{handler}` returned a value that is not a `{expected}`: {error}")]
    WrongType {
        /// The handler.
        handler: String,
        /// The type asked for.
        expected: &'static str,
        /// The decoding error.
        error: String,
    },
    /// No answer within the request's timeout.
    #[error("no answer to `{event}` within {timeout:?}")]
    TimedOut {
        /// The event's name.
        event: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The request could not be published.
    #[error(transparent)]
    Publish(#[from] EventError),
}
