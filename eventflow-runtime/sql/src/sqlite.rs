//! What SQLite needs said its own way.

/// Column types of the model tables.
pub(crate) const ID_COLUMN: &str = "INTEGER PRIMARY KEY AUTOINCREMENT";
pub(crate) const DOC_COLUMN: &str = "TEXT";
/// The integer type of the outbox's times.
pub(crate) const BIG: &str = "INTEGER";
/// Reading the document as text.
pub(crate) const DOC_SELECT: &str = "doc";
/// Binding a document parameter.
pub(crate) const DOC_PARAM: &str = "$1";
/// Taking outbox rows: SQLite's write lock already keeps other relays out.
pub(crate) const LOCK_ROWS: &str = "";
/// A transaction takes the write lock at once, so one that reads then writes never fails
/// to upgrade its lock; others wait (busy timeout).
pub(crate) const BEGIN: Option<&str> = Some("BEGIN IMMEDIATE");
/// Connections of the pool.
pub(crate) const MAX_CONNECTIONS: u32 = 4;

/// The URL of the database file at `path` (created if missing).
pub(crate) fn url(path: &str) -> String {
    format!("sqlite://{path}?mode=rwc")
}

/// Readers do not wait for writers. (Set before anything else runs: the change needs a
/// lock that the busy timeout does not wait for.)
pub(crate) const AFTER_CONNECT: Option<&str> = Some("PRAGMA journal_mode=WAL");
