//! Dead letters: events a handler could not process, kept for inspection and retry
//! (earnorm's "failed jobs": events its Celery-style workers gave up on, listed and retried by hand).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ConnectionError, HandlerErrorKind};
use crate::event::Envelope;
use crate::util::BoxFuture;
use crate::util::millis;

/// An event one handler gave up on: its retries ran out, or it failed permanently.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The dead letter's own id (used to retry or remove it).
    pub id: uuid::Uuid,
    /// The handler that failed.
    pub handler: String,
    /// The event, as it was published.
    pub envelope: Envelope,
    /// The last error, with its source chain.
    pub error: String,
    /// The last error's kind.
    pub error_kind: HandlerErrorKind,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt failed. (When the event was published is
    /// `envelope.timestamp`.)
    #[serde(with = "epoch_millis")]
    pub first_failed_at: SystemTime,
    /// When the last attempt failed.
    #[serde(with = "epoch_millis")]
    pub failed_at: SystemTime,
}

impl DeadLetter {
    /// A dead letter with a new id for `envelope`, which `handler` gave up on after
    /// `attempts` attempts with `error`. Every dead letter of the crate and its backends is
    /// made here.
    pub fn new(
        handler: impl Into<String>,
        envelope: Envelope,
        error: impl std::fmt::Display,
        error_kind: HandlerErrorKind,
        attempts: u32,
        first_failed_at: SystemTime,
        failed_at: SystemTime,
    ) -> Self {
        DeadLetter {
            id: uuid::Uuid::new_v4(),
            handler: handler.into(),
            envelope,
            error: error.to_string(),
            error_kind,
            attempts,
            first_failed_at,
            failed_at,
        }
    }
}

mod epoch_millis {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(millis(*t))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Where dead letters are kept. The memory store is the default; network backends bring
/// their own so that any process can list, retry and remove them.
#[allow(clippy::len_without_is_empty)]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps a dead letter.
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>>;
    /// Every dead letter, oldest first. For a large store, use [`page`](Self::page).
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>>;
    /// One page of the letters `query` selects, and the cursor of the next. The work
    /// of one call is bounded by the page size (and, with filters, by a bounded scan that
    /// may return a short page with a cursor to go on from), whatever the store's size.
    ///
    /// The default pages over [`list`](Self::list) by position: correct, but it reads
    /// every letter; a store of its own should implement it.
    fn page<'a>(
        &'a self,
        query: &'a DeadLetterQuery,
    ) -> BoxFuture<'a, Result<DeadLetterPage, ConnectionError>> {
        Box::pin(async move {
            let all = self.list().await?;
            let start: usize = query
                .cursor
                .as_deref()
                .map_or(Ok(0), str::parse)
                .map_err(|_| ConnectionError {
                    backend: "dead letters",
                    message: "the cursor is not one this store returned".into(),
                    source: None,
                })?;
            let size = query.page_size();
            let mut letters = Vec::new();
            let mut next = None;
            for (i, l) in all.into_iter().enumerate().skip(start) {
                if letters.len() == size {
                    next = Some(i.to_string());
                    break;
                }
                if query.matches(&l) {
                    letters.push(l);
                }
            }
            Ok(DeadLetterPage { letters, next })
        })
    }
    /// One dead letter, if it is there (the store keeps it). The default looks through
    /// [`list`](Self::list); a store of its own should implement it.
    fn get(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        Box::pin(async move { Ok(self.list().await?.into_iter().find(|l| l.id == id)) })
    }
    /// Takes one dead letter out of the store, if it is there.
    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>>;
    /// How many dead letters there are.
    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>>;
}

mod memory;
mod query;

pub use memory::{DEFAULT_DEAD_LETTER_AGE, DEFAULT_MAX_DEAD_LETTERS, MemoryDeadLetters};
pub use query::{DeadLetterPage, DeadLetterQuery, MAX_PAGE};
