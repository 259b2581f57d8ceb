//! What SQLite needs said its own way.

use crate::driver::Dialect;

pub(crate) const DIALECT: Dialect = Dialect {
    name: "sqlite",
    id_column: "INTEGER PRIMARY KEY AUTOINCREMENT",
    doc_column: "TEXT",
    big: "INTEGER",
    doc_select: "doc",
    doc_param: "$1",
    // SQLite's write lock already keeps other relays out.
    lock_rows: "",
    // A transaction takes the write lock at once, so one that reads then writes never
    // fails to upgrade its lock; others wait (busy timeout).
    begin: Some("BEGIN IMMEDIATE"),
    max_connections: 4,
    // Readers do not wait for writers. (Set before anything else runs: the change needs a
    // lock that the busy timeout does not wait for.)
    after_connect: Some("PRAGMA journal_mode=WAL"),
};

/// The URL of the database file at `path` (created if missing).
pub(crate) fn url(path: &str) -> String {
    format!("sqlite://{path}?mode=rwc")
}
