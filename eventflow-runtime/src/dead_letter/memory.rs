//! Dead letters kept in this process's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{DeadLetter, DeadLetterPage, DeadLetterQuery, DeadLetterStore};
use crate::error::ConnectionError;
use crate::util::BoxFuture;

/// Letters by arrival, and where each id is: paging by cursor and removal by id both cost
/// a map lookup, not a scan.
#[derive(Default)]
struct Letters {
    by_seq: BTreeMap<u64, DeadLetter>,
    seq_of: HashMap<uuid::Uuid, u64>,
    next_seq: u64,
}

/// Dead letters in this process's memory.
#[derive(Default)]
pub struct MemoryDeadLetters {
    letters: Mutex<Letters>,
}

impl std::fmt::Debug for MemoryDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDeadLetters")
            .field("len", &crate::util::lock(&self.letters).by_seq.len())
            .finish()
    }
}

impl MemoryDeadLetters {
    fn with<R>(&self, f: impl FnOnce(&mut Letters) -> R) -> R {
        f(&mut crate::util::lock(&self.letters))
    }
}

fn bad_cursor() -> ConnectionError {
    ConnectionError {
        backend: "memory",
        message: "the cursor is not one this store returned".into(),
        source: None,
    }
}

impl DeadLetterStore for MemoryDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>> {
        self.with(|l| {
            let seq = l.next_seq;
            l.next_seq = l.next_seq.saturating_add(1);
            if let Some(old) = l.seq_of.insert(letter.id, seq) {
                l.by_seq.remove(&old);
            }
            l.by_seq.insert(seq, letter);
        });
        Box::pin(async { Ok(()) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>> {
        let r = self.with(|l| l.by_seq.values().cloned().collect());
        Box::pin(async move { Ok(r) })
    }

    fn page<'a>(
        &'a self,
        query: &'a DeadLetterQuery,
    ) -> BoxFuture<'a, Result<DeadLetterPage, ConnectionError>> {
        let start = match query.cursor.as_deref().map(str::parse::<u64>) {
            None => Ok(0),
            Some(Ok(s)) => Ok(s),
            Some(Err(_)) => Err(bad_cursor()),
        };
        let r = start.map(|start| {
            self.with(|l| {
                let size = query.page_size();
                let mut letters = Vec::with_capacity(size.min(l.by_seq.len()));
                let mut next = None;
                for (seq, letter) in l.by_seq.range(start..) {
                    if letters.len() == size {
                        next = Some(seq.to_string());
                        break;
                    }
                    if query.matches(letter) {
                        letters.push(letter.clone());
                    }
                }
                DeadLetterPage { letters, next }
            })
        });
        Box::pin(async move { r })
    }

    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        let r = self.with(|l| l.seq_of.remove(&id).and_then(|seq| l.by_seq.remove(&seq)));
        Box::pin(async move { Ok(r) })
    }

    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>> {
        let r = self.with(|l| l.by_seq.len());
        Box::pin(async move { Ok(r) })
    }
}
