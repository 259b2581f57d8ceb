//! The seam between the store and a database: JSON documents in tables, written in a
//! transaction together with the outbox rows of their model events.
//!
//! The [`Store`](super::Store) runs hooks, keeps model ids, builds model events and
//! relays the outbox; a driver only stores. A driver for another database implements
//! [`StoreDriver`] and [`DriverTx`] (and, when it has an outbox, [`OutboxBatch`]) and
//! proves itself with `eventflow::testing::store_suite!`. The memory driver
//! ([`MemoryDriver`](super::MemoryDriver)) is the reference; `eventflow-sql` holds the
//! SQLite and PostgreSQL drivers.
//!
//! Tables are named by the store (`<prefix>m_<model>`, letters, digits and `_` only); a
//! driver creates a table on first use, inside the transaction that first writes it.

use serde_json::Value;

use super::StoreError;
use crate::event::Envelope;
use crate::util::BoxFuture;

/// One unsent row of a driver's outbox.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    /// Its place in the outbox (rows are published in this order).
    pub seq: i64,
    /// The envelope as stored (JSON).
    pub envelope: String,
}

/// A batch of unsent outbox rows taken in a transaction of their own (on a database that
/// several processes relay from, the rows are locked against the others).
pub trait OutboxBatch: Send {
    /// The rows, in order.
    fn rows(&self) -> &[OutboxRow];
    /// Marks a row sent, or set aside with `error` (a row that can never be published).
    fn mark<'a>(
        &'a mut self,
        seq: i64,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Commits the marks made so far.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A running transaction of a driver. Reads see its own writes.
pub trait DriverTx: Send {
    /// Inserts a document; returns the id the database assigned.
    fn insert<'a>(
        &'a mut self,
        table: &'a str,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// Replaces the document with this id.
    fn update<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes the document with this id.
    fn delete<'a>(&'a mut self, table: &'a str, id: i64) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The document with this id, as this transaction sees it.
    fn get<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;
    /// Writes a model event to the outbox, in this transaction. Called only on a driver
    /// whose [`StoreDriver::has_outbox`] is true.
    fn outbox_push<'a>(
        &'a mut self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Commits.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Rolls back.
    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A database the store keeps models in. See the [module documentation](self).
pub trait StoreDriver: Send + Sync + 'static {
    /// A short name (`memory`, `sqlite`, `postgres`).
    fn name(&self) -> &'static str;
    /// Whether model events go through this driver's outbox, in the writing transaction.
    /// Without one, the store publishes them right after the commit.
    fn has_outbox(&self) -> bool;
    /// Creates what the store needs before its first write: the outbox, and the tables
    /// named (those of the registered models).
    fn prepare<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Begins a transaction.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn DriverTx>, StoreError>>;
    /// The committed document with this id.
    fn get<'a>(
        &'a self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>>;
    /// Every committed document of a table, by id.
    fn all<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<(i64, Value)>, StoreError>>;
    /// Drops the tables named and the outbox: everything stored is lost.
    fn drop_tables<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Takes up to `limit` unsent outbox rows, in order (none without an outbox).
    fn outbox_take(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<Box<dyn OutboxBatch>>, StoreError>>;
    /// Outbox rows not yet sent.
    fn outbox_pending(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}
