//! Dead letters: events a handler could not process, kept for inspection and retry
//! (earnorm's failed jobs).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{ConnectionError, HandlerErrorKind};
use crate::event::{Envelope, millis};
use crate::handler::BoxFuture;

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

mod epoch_millis {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(millis(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Where dead letters are kept. The memory store is the default; network backends bring
/// their own so that any process can list, retry and remove them.
#[allow(clippy::len_without_is_empty)]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Keeps a dead letter.
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>>;
    /// Every dead letter, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>>;
    /// Takes one dead letter out of the store, if it is there.
    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>>;
    /// How many dead letters there are.
    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>>;
}

/// Dead letters in this process's memory.
#[derive(Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl MemoryDeadLetters {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<DeadLetter>) -> R) -> Result<R, ConnectionError> {
        // A panic while holding the lock cannot leave the Vec half-updated, so a poisoned
        // lock is still safe to use.
        let mut guard = self.letters.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut guard))
    }
}

impl DeadLetterStore for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let r = self.with(|v| v.push(letter));
        Box::pin(async move { r })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>> {
        let r = self.with(|v| v.clone());
        Box::pin(async move { r })
    }

    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        let r = self.with(|v| v.iter().position(|l| l.id == id).map(|i| v.remove(i)));
        Box::pin(async move { r })
    }

    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>> {
        let r = self.with(|v| v.len());
        Box::pin(async move { r })
    }
}
