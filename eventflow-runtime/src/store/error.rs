//! What goes wrong in a store.
//!
//! A [`StoreError`] is about a write or a read of models: a hook's veto, a missing model,
//! a document that does not (de)serialize, the database. It is not an
//! [`EventError`](crate::EventError): a store publishes its model events after the commit,
//! and a publish that fails there is counted and retried by the outbox relay, never
//! returned to the writer, whose write has already committed.

#[cfg(doc)]
use crate::model::HookError;
use crate::model::Operation;

/// The error a driver's database gave, kept as the source of [`StoreError::Database`].
pub type DatabaseSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A before-hook refused or failed: nothing was written.
    #[error("{operation} of {model} vetoed by hook `{hook}`: {message}")]
    Vetoed {
        /// The hook's name.
        hook: String,
        /// The model's name.
        model: &'static str,
        /// The operation.
        operation: Operation,
        /// The hook's message.
        message: String,
        /// Whether the hook refused deliberately ([`HookError::veto`]).
        deliberate: bool,
    },
    /// The model has no id (it was never stored).
    #[error("{operation} of {model} needs a stored model, but this one has no id")]
    NoId {
        /// The model's name.
        model: &'static str,
        /// The operation.
        operation: Operation,
    },
    /// No row with this id.
    #[error("no {model} with id {id}")]
    NotFound {
        /// The model's name.
        model: &'static str,
        /// The id.
        id: i64,
    },
    /// The model cannot be turned into JSON or back.
    #[error("{model} cannot be (de)serialized: {source}")]
    Serde {
        /// The model's name.
        model: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The database failed. The driver's own error is the [`source`](std::error::Error::source)
    /// (for the SQL drivers a `sqlx::Error`, which tells a unique-key violation apart).
    #[error("database error: {message}")]
    Database {
        /// What failed.
        message: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<DatabaseSource>,
    },
    /// The outbox could not publish a model event, for a reason that may pass (the
    /// backend cannot be reached, the bus is shut down): the event stays in the outbox and
    /// the relay tries again. Returned by [`Store::relay_now`](super::Store::relay_now).
    #[error("the outbox cannot publish yet: {0}")]
    Publish(#[source] crate::error::EventError),
    /// The transaction was used after it ended.
    #[error("the transaction has already ended")]
    Ended,
    /// The closure given to [`Store::transaction`](super::Store::transaction) failed.
    #[error("transaction rolled back: {0}")]
    Aborted(String),
}

impl StoreError {
    /// Aborts a [`Store::transaction`](super::Store::transaction) with a message of yours.
    pub fn abort(reason: impl std::fmt::Display) -> Self {
        StoreError::Aborted(reason.to_string())
    }

    /// A database error with the driver's error as its source.
    pub fn database(
        message: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Database {
            message: message.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// A database error without a source.
    pub fn database_msg(message: impl std::fmt::Display) -> Self {
        StoreError::Database {
            message: message.to_string(),
            source: None,
        }
    }

    /// The driver's error of a [`Database`](Self::Database) error, as `E`.
    pub fn database_source<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            StoreError::Database {
                source: Some(s), ..
            } => s.downcast_ref::<E>(),
            _ => None,
        }
    }
}
