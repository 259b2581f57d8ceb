//! What PostgreSQL needs said its own way.

/// Column types of the model tables.
pub(crate) const ID_COLUMN: &str = "BIGSERIAL PRIMARY KEY";
pub(crate) const DOC_COLUMN: &str = "JSONB";
/// The integer type of the outbox's times.
pub(crate) const BIG: &str = "BIGINT";
/// Reading the document as text.
pub(crate) const DOC_SELECT: &str = "doc::text";
/// Binding a document parameter.
pub(crate) const DOC_PARAM: &str = "$1::jsonb";
/// Several processes may relay one outbox: each takes rows the others have not locked.
pub(crate) const LOCK_ROWS: &str = " FOR UPDATE SKIP LOCKED";
/// A plain `BEGIN`.
pub(crate) const BEGIN: Option<&str> = None;
/// Connections of the pool.
pub(crate) const MAX_CONNECTIONS: u32 = 8;
/// Nothing to set after connecting.
pub(crate) const AFTER_CONNECT: Option<&str> = None;
