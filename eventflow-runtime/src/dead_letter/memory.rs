//! Dead letters kept in this process's memory.

use std::sync::Mutex;

use super::{DeadLetter, DeadLetterStore};
use crate::error::ConnectionError;
use crate::util::BoxFuture;

/// Dead letters in this process's memory.
#[derive(Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl MemoryDeadLetters {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<DeadLetter>) -> R) -> Result<R, ConnectionError> {
        // A panic while holding the lock cannot leave the Vec half-updated, so a poisoned
        // lock is still safe to use.
        let mut guard = crate::util::lock(&self.letters);
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
