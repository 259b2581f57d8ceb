//! Paging and filtering dead letters, for stores of any size.

use super::DeadLetter;

/// The most letters one page holds.
pub const MAX_PAGE: usize = 1000;

/// Which dead letters to list: a page of at most `limit` letters after `cursor`,
/// optionally only one handler's or one event name's.
///
/// ```
/// use eventflow_runtime::DeadLetterQuery;
/// let q = DeadLetterQuery::new()
///     .limit(50)
///     .handler("send_welcome")
///     .event("user.created")
///     .search("timed out");
/// assert_eq!(q.page_size(), 50);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterQuery {
    /// Only this handler's letters.
    pub handler: Option<String>,
    /// Only letters of events with this name.
    pub event: Option<String>,
    /// Only letters whose error contains this text (ignoring case).
    pub search: Option<String>,
    /// Letters per page (1 to [`MAX_PAGE`]; 0 means the default, 100).
    pub limit: usize,
    /// Where the page starts: the `next` cursor of the page before, or none for the first.
    pub cursor: Option<String>,
}

impl DeadLetterQuery {
    /// The first page of 100 letters, unfiltered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Letters per page (clamped to 1 ..= [`MAX_PAGE`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Starts after the page that returned this cursor.
    pub fn cursor(mut self, cursor: impl Into<String>) -> Self {
        self.cursor = Some(cursor.into());
        self
    }

    /// Only this handler's letters.
    pub fn handler(mut self, handler: impl Into<String>) -> Self {
        self.handler = Some(handler.into());
        self
    }

    /// Only letters of events with this name.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Only letters whose error contains `text` (ignoring case).
    pub fn search(mut self, text: impl Into<String>) -> Self {
        self.search = Some(text.into());
        self
    }

    /// The page size after defaults and clamping.
    pub fn page_size(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        }
    }

    /// Whether `letter` passes the filters.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.handler.as_deref().is_none_or(|h| letter.handler == h)
            && self
                .event
                .as_deref()
                .is_none_or(|e| letter.envelope.name == e)
            && self.search.as_deref().is_none_or(|t| {
                t.is_empty() || letter.error.to_lowercase().contains(&t.to_lowercase())
            })
    }
}

/// One page of dead letters.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DeadLetterPage {
    /// The letters, in the store's order (oldest first for the memory store).
    pub letters: Vec<DeadLetter>,
    /// The cursor of the next page, or none when this is the last.
    pub next: Option<String>,
}

impl DeadLetterPage {
    /// A page.
    pub fn new(letters: Vec<DeadLetter>, next: Option<String>) -> Self {
        DeadLetterPage { letters, next }
    }
}
