//! Errors: [`EventError`] at the top, and the specific errors it wraps.
//!
//! A handler returns `Result<(), E>` for any `E: Into<HandlerError>`. Every type that
//! implements [`std::error::Error`] converts into [`HandlerError`], so `?` works on I/O
//! errors, serde errors and your own error types inside handlers. The original error is
//! kept as the source, which is what `retry_on = [...]` inspects.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::event::EventId;

/// The result type of eventflow's fallible operations.
pub type Result<T, E = EventError> = std::result::Result<T, E>;

/// The top-level error of eventflow: every public operation's error converts into it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// No handler matches the published event's name.
    #[error(transparent)]
    NoHandler(#[from] NoHandler),
    /// The registry or the bus configuration is invalid.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// A backend could not be reached.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A handler failed.
    #[error("{0}")]
    Handler(HandlerError),
    /// No dead letter has this id.
    #[error("no dead letter with id {0}")]
    DeadLetterNotFound(uuid::Uuid),
    /// The named handler is not part of this bus.
    #[error("no handler named `{0}` on this bus")]
    UnknownHandler(String),
}

impl From<HandlerError> for EventError {
    fn from(err: HandlerError) -> Self {
        EventError::Handler(err)
    }
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The bus was shut down; it accepts no new events.
    #[error("cannot publish `{name}`: the bus is shut down")]
    ShutDown {
        /// The event's name.
        name: String,
    },
    /// The event name breaks the naming rules.
    #[error("invalid event name `{name}`: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The payload could not be turned into JSON.
    #[error("cannot serialize the payload of `{name}`: {source}")]
    Serialize {
        /// The event's name.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The serialized event is larger than the backend accepts.
    #[error("event `{name}` is {size} bytes serialized; the backend accepts at most {max}")]
    TooLarge {
        /// The event's name.
        name: String,
        /// Its serialized size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The serialized event nests arrays and objects deeper than a worker reads, so no
    /// worker could ever handle it.
    #[error("event `{name}` nests {depth} levels deep serialized; a worker reads at most {max}")]
    TooDeep {
        /// The event's name.
        name: String,
        /// How deeply it nests (the envelope's own object included).
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// The bus holds as many events as it may (a memory bus's
    /// [`max_waiting`](crate::MemoryBackend::max_waiting)) and no room came up in time.
    #[error("cannot publish `{name}`: the bus holds its maximum of {max_waiting} waiting events")]
    Full {
        /// The event's name.
        name: String,
        /// The bound.
        max_waiting: usize,
    },
    /// The backend refused or lost the event.
    #[error("backend could not accept `{name}`: {source}")]
    Backend {
        /// The event's name.
        name: String,
        /// What the backend said.
        #[source]
        source: ConnectionError,
    },
}

/// No handler matches an event's name, and the bus does not allow unhandled events.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "no handler matches event `{name}` (build the bus with `allow_unhandled(true)` to accept it anyway)"
)]
pub struct NoHandler {
    /// The event's name.
    pub name: String,
}

/// Every problem found when validating the registry or a bus, reported together. It
/// prints one line per problem; each is also there as data ([`Problem`]).
#[derive(Debug, Clone, thiserror::Error)]
pub struct ValidationError {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl ValidationError {
    /// The problems of one kind.
    pub fn of_kind(&self, kind: ProblemKind) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(move |p| p.kind == kind)
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) found:", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// What kind of problem a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Two handlers, events, models or scheduled functions share one name.
    DuplicateName,
    /// A name breaks the naming rules.
    InvalidName,
    /// A handler's pattern breaks the pattern rules.
    InvalidPattern,
    /// An option's value, or two options together, cannot work.
    InvalidOption,
    /// A name given to the builder names nothing registered.
    UnknownName,
    /// A scheduled function's schedule cannot run.
    InvalidSchedule,
    /// A lifecycle hook is declared in a way that cannot work.
    InvalidHook,
    /// The bus is built where it cannot run (outside a tokio runtime).
    Runtime,
}

/// One problem of a [`ValidationError`]: what kind, which name it is about, and the
/// message (which says where, and what to do).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The handler, event, model or schedule it is about, when there is one.
    pub name: Option<String>,
    /// The whole message, as printed.
    pub message: String,
}

impl Problem {
    /// A problem about `name`.
    pub fn new(kind: ProblemKind, name: &str, message: impl Into<String>) -> Self {
        Problem {
            kind,
            name: Some(name.to_owned()),
            message: message.into(),
        }
    }

    /// A problem about no one name.
    pub fn general(kind: ProblemKind, message: impl Into<String>) -> Self {
        Problem {
            kind,
            name: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A backend could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct ConnectionError {
    /// Which backend (`memory`, `redis`, ...).
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
    /// The underlying error, if any.
    #[source]
    pub source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of failure a [`HandlerError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// The handler returned an error. Retried per the retry policy.
    Failed,
    /// The handler returned [`HandlerError::permanent`]. Never retried.
    Permanent,
    /// The handler panicked. Retried per the retry policy.
    Panicked,
    /// The attempt exceeded the handler's timeout and was cancelled. Retried per the policy.
    TimedOut,
    /// The payload could not be converted into the handler's event type. Never retried.
    Payload,
    /// The attempt was cancelled (for example by shutdown). Never retried.
    Cancelled,
}

impl HandlerErrorKind {
    /// A short lower-case name (`failed`, `panicked`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HandlerErrorKind::Failed => "failed",
            HandlerErrorKind::Permanent => "permanent",
            HandlerErrorKind::Panicked => "panicked",
            HandlerErrorKind::TimedOut => "timed_out",
            HandlerErrorKind::Payload => "payload",
            HandlerErrorKind::Cancelled => "cancelled",
        }
    }
}

/// The error of one handler attempt.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it (so `?` works), and
/// the original is kept as [`source`](HandlerError::source) for `retry_on` to inspect.
///
/// ```
/// use eventflow_runtime::HandlerError;
/// let err: HandlerError = std::io::Error::other("disk full").into();
/// assert!(err.is::<std::io::Error>());
/// let fatal = HandlerError::permanent_msg("account closed");
/// assert!(!fatal.is_retryable());
/// ```
pub struct HandlerError {
    kind: HandlerErrorKind,
    source: Box<dyn StdError + Send + Sync + 'static>,
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Message {}

/// The source of a [`HandlerError`] of kind [`HandlerErrorKind::Panicked`].
///
/// List it in `retry_on = [...]` to retry panics when `retry_on` is given.
#[derive(Debug, Clone, thiserror::Error)]
#[error("handler panicked: {message}")]
pub struct PanicError {
    /// The panic message, when it was a string.
    pub message: String,
}

/// The source of a [`HandlerError`] of kind [`HandlerErrorKind::TimedOut`].
///
/// List it in `retry_on = [...]` to retry timeouts when `retry_on` is given.
#[derive(Debug, Clone, thiserror::Error)]
#[error("handler timed out after {after:?}")]
pub struct TimeoutError {
    /// The timeout that was exceeded.
    pub after: Duration,
}

/// The source of a [`HandlerError`] of kind [`HandlerErrorKind::Payload`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("payload of event `{event}` ({id}) is not a valid `{expected}`: {reason}")]
pub struct PayloadError {
    /// The event's name.
    pub event: String,
    /// The event's id.
    pub id: EventId,
    /// The type the handler expected.
    pub expected: &'static str,
    /// Why it did not convert.
    pub reason: String,
}

impl HandlerError {
    /// Wraps an error as a retryable failure.
    pub fn new<E: StdError + Send + Sync + 'static>(err: E) -> Self {
        Self::with_kind(HandlerErrorKind::Failed, err)
    }

    /// A retryable failure with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(Message(message.to_string()))
    }

    /// Wraps an error as a permanent failure: never retried, sent to dead letters at once.
    pub fn permanent<E: StdError + Send + Sync + 'static>(err: E) -> Self {
        Self::with_kind(HandlerErrorKind::Permanent, err)
    }

    /// A permanent failure with a message.
    pub fn permanent_msg(message: impl fmt::Display) -> Self {
        Self::permanent(Message(message.to_string()))
    }

    /// An error of the given kind with the given source.
    pub fn with_kind<E: StdError + Send + Sync + 'static>(kind: HandlerErrorKind, err: E) -> Self {
        HandlerError {
            kind,
            source: Box::new(err),
        }
    }

    pub(crate) fn panicked(message: String) -> Self {
        Self::with_kind(HandlerErrorKind::Panicked, PanicError { message })
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Self::with_kind(HandlerErrorKind::TimedOut, TimeoutError { after })
    }

    pub(crate) fn cancelled(why: &str) -> Self {
        Self::with_kind(HandlerErrorKind::Cancelled, Message(why.to_string()))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }

    /// The wrapped error.
    pub fn source(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// Whether the default rule retries this error: every kind except
    /// [`Permanent`](HandlerErrorKind::Permanent), [`Payload`](HandlerErrorKind::Payload)
    /// and [`Cancelled`](HandlerErrorKind::Cancelled).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.kind,
            HandlerErrorKind::Permanent | HandlerErrorKind::Payload | HandlerErrorKind::Cancelled
        )
    }

    /// Whether the wrapped error, or any error in its source chain, is a `T`.
    pub fn is<T: StdError + 'static>(&self) -> bool {
        self.downcast_ref::<T>().is_some()
    }

    /// The first error of type `T` in the source chain, starting with the wrapped error.
    pub fn downcast_ref<T: StdError + 'static>(&self) -> Option<&T> {
        let mut current: Option<&(dyn StdError + 'static)> = Some(&*self.source);
        while let Some(err) = current {
            if let Some(found) = err.downcast_ref::<T>() {
                return Some(found);
            }
            current = err.source();
        }
        None
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(err: E) -> Self {
        HandlerError::new(err)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)?;
        let mut next = self.source.source();
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = err.source();
        }
        Ok(())
    }
}

/// What an annotated function may return: `()`, or `Result<(), E>` for any `E` that
/// converts into the error `Err` the framework records ([`HandlerError`] for handlers and
/// scheduled functions, [`HookError`](crate::HookError) for lifecycle hooks). One trait for
/// every kind of annotated function.
///
/// ```
/// use eventflow_runtime::{HandlerError, IntoResult};
/// let ok: Result<(), HandlerError> = ().into_result();
/// assert!(ok.is_ok());
/// let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
/// let failed: Result<(), HandlerError> = io.into_result();
/// assert!(failed.is_err());
/// ```
#[diagnostic::on_unimplemented(
    message = "an eventflow function cannot return `{Self}`",
    label = "unsupported return type",
    note = "it returns `()` or `Result<(), E>` where `E: Into<{Err}>` (for a handler: any `std::error::Error`, `HandlerError`, or `EventError`)"
)]
pub trait IntoResult<Err> {
    /// Converts into the result the framework records.
    fn into_result(self) -> Result<(), Err>;
}

impl<Err> IntoResult<Err> for () {
    fn into_result(self) -> Result<(), Err> {
        Ok(())
    }
}

impl<Err, E: Into<Err>> IntoResult<Err> for Result<(), E> {
    fn into_result(self) -> Result<(), Err> {
        self.map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn source_chain_is_searched() {
        let err: HandlerError = Outer(std::io::Error::other("inner")).into();
        assert!(err.is::<Outer>());
        assert!(err.is::<std::io::Error>());
        assert!(!err.is::<PanicError>());
        assert_eq!(err.to_string(), "outer: inner");
    }

    #[test]
    fn permanent_is_not_retryable() {
        assert!(HandlerError::msg("x").is_retryable());
        assert!(!HandlerError::permanent_msg("x").is_retryable());
        assert!(HandlerError::panicked("boom".into()).is_retryable());
        assert!(HandlerError::timed_out(Duration::from_secs(1)).is_retryable());
    }

    #[test]
    fn event_error_converts_into_handler_error() {
        let e: HandlerError = EventError::from(NoHandler { name: "a.b".into() }).into();
        assert!(e.is::<EventError>());
        assert!(e.to_string().contains("a.b"));
    }
}
