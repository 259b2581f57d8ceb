//! Dead letters kept in this process's memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// Dead letters kept by default at most: the oldest go first past it.
pub const DEFAULT_MAX_DEAD_LETTERS: usize = 100_000;

/// How long dead letters are kept by default: a week after they failed.
pub const DEFAULT_DEAD_LETTER_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Dead letters in this process's memory, kept up to a bound: at most
/// [`DEFAULT_MAX_DEAD_LETTERS`] letters, none older than [`DEFAULT_DEAD_LETTER_AGE`], by
/// default ([`with_retention`](Self::with_retention) sets others). Past the bound the
/// oldest go first, counted by [`evicted`](Self::evicted). Paging by cursor and removal
/// by id cost a map lookup, not a scan.
pub struct MemoryDeadLetters {
    letters: Mutex<Letters>,
    max_count: usize,
    max_age: Option<Duration>,
    evicted: AtomicU64,
}

impl Default for MemoryDeadLetters {
    fn default() -> Self {
        Self::with_retention(DEFAULT_MAX_DEAD_LETTERS, Some(DEFAULT_DEAD_LETTER_AGE))
    }
}

impl std::fmt::Debug for MemoryDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDeadLetters")
            .field("len", &crate::util::lock(&self.letters).by_seq.len())
            .finish()
    }
}

impl MemoryDeadLetters {
    /// Keeps at most `max_count` letters (at least 1), and none that failed longer than
    /// `max_age` ago (`None`: whatever their age).
    pub fn with_retention(max_count: usize, max_age: Option<Duration>) -> Self {
        MemoryDeadLetters {
            letters: Mutex::new(Letters::default()),
            max_count: max_count.max(1),
            max_age,
            evicted: AtomicU64::new(0),
        }
    }

    /// Letters dropped so far because the store was full or they were too old.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Runs `f` on the letters, within the retention bound before and after.
    fn with<R>(&self, f: impl FnOnce(&mut Letters) -> R) -> R {
        let mut l = crate::util::lock(&self.letters);
        self.enforce(&mut l);
        let r = f(&mut l);
        self.enforce(&mut l);
        r
    }

    /// Drops the oldest letters past the bound (oldest by arrival, which is by failure).
    fn enforce(&self, l: &mut Letters) {
        let now = SystemTime::now();
        let mut dropped = 0u64;
        loop {
            let len = l.by_seq.len();
            let Some(entry) = l.by_seq.first_entry() else {
                break;
            };
            let too_old = self.max_age.is_some_and(|age| {
                now.duration_since(entry.get().failed_at)
                    .is_ok_and(|d| d > age)
            });
            if len <= self.max_count && !too_old {
                break;
            }
            let letter = entry.remove();
            l.seq_of.remove(&letter.id);
            dropped += 1;
        }
        if dropped > 0 {
            self.evicted.fetch_add(dropped, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                kept = l.by_seq.len(),
                "eventflow: memory dead letters past their retention bound were dropped"
            );
        }
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
        // One already past its age (it failed long ago) is not kept at all.
        let expired = self.max_age.is_some_and(|age| {
            SystemTime::now()
                .duration_since(letter.failed_at)
                .is_ok_and(|d| d > age)
        });
        if expired {
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(id = %letter.id, "eventflow: a dead letter older than the retention age was dropped");
            return Box::pin(async { Ok(()) });
        }
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

    fn get(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        let r = self.with(|l| l.seq_of.get(&id).and_then(|seq| l.by_seq.get(seq)).cloned());
        Box::pin(async move { Ok(r) })
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
