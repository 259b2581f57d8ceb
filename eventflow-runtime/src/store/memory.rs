//! The memory driver: documents in this process, gone when it ends. The embedded default,
//! and the reference for other drivers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::StoreError;
use super::driver::{DriverTx, OutboxBatch, StoreDriver};
use crate::event::Envelope;
use crate::util::{BoxFuture, lock};

#[derive(Default)]
struct Tables {
    docs: HashMap<String, BTreeMap<i64, Value>>,
    next_id: HashMap<String, i64>,
}

/// Models in this process's memory. Model events are published right after each commit
/// (there is no outbox: nothing outlives the process anyway).
#[derive(Clone, Default)]
pub struct MemoryDriver {
    tables: Arc<Mutex<Tables>>,
}

impl std::fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDriver").finish_non_exhaustive()
    }
}

impl MemoryDriver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

enum Op {
    Put(String, i64, Value),
    Remove(String, i64),
}

struct MemoryTx {
    tables: Arc<Mutex<Tables>>,
    ops: Vec<Op>,
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(v))
}

impl DriverTx for MemoryTx {
    fn insert<'a>(
        &'a mut self,
        table: &'a str,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        // Ids are taken when written, as a database sequence: a rolled back id is not reused.
        let id = {
            let mut t = lock(&self.tables);
            let next = t.next_id.entry(table.to_owned()).or_insert(0);
            *next = next.saturating_add(1);
            *next
        };
        self.ops.push(Op::Put(table.to_owned(), id, doc.clone()));
        ready(Ok(id))
    }

    fn update<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.ops.push(Op::Put(table.to_owned(), id, doc.clone()));
        ready(Ok(()))
    }

    fn delete<'a>(&'a mut self, table: &'a str, id: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.ops.push(Op::Remove(table.to_owned(), id));
        ready(Ok(()))
    }

    fn get<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        let staged = self.ops.iter().rev().find_map(|op| match op {
            Op::Put(t, i, doc) if t == table && *i == id => Some(Some(doc.clone())),
            Op::Remove(t, i) if t == table && *i == id => Some(None),
            _ => None,
        });
        let doc = match staged {
            Some(doc) => doc,
            None => lock(&self.tables)
                .docs
                .get(table)
                .and_then(|t| t.get(&id))
                .cloned(),
        };
        ready(Ok(doc))
    }

    fn outbox_push<'a>(
        &'a mut self,
        _envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Err(StoreError::database_msg(
            "the memory driver has no outbox",
        )))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut t = lock(&self.tables);
        for op in self.ops {
            match op {
                Op::Put(table, id, doc) => {
                    t.docs.entry(table).or_default().insert(id, doc);
                }
                Op::Remove(table, id) => {
                    t.docs.entry(table).or_default().remove(&id);
                }
            }
        }
        ready(Ok(()))
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        ready(Ok(()))
    }
}

impl StoreDriver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn has_outbox(&self) -> bool {
        false
    }

    fn prepare<'a>(&'a self, _tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(Ok(()))
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn DriverTx>, StoreError>> {
        let tx: Box<dyn DriverTx> = Box::new(MemoryTx {
            tables: self.tables.clone(),
            ops: Vec::new(),
        });
        ready(Ok(tx))
    }

    fn get<'a>(
        &'a self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        let doc = lock(&self.tables)
            .docs
            .get(table)
            .and_then(|t| t.get(&id))
            .cloned();
        ready(Ok(doc))
    }

    fn all<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<(i64, Value)>, StoreError>> {
        let rows = lock(&self.tables)
            .docs
            .get(table)
            .map(|t| t.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default();
        ready(Ok(rows))
    }

    fn drop_tables<'a>(&'a self, _tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        *lock(&self.tables) = Tables::default();
        ready(Ok(()))
    }

    fn outbox_take(
        &self,
        _limit: usize,
    ) -> BoxFuture<'_, Result<Option<Box<dyn OutboxBatch>>, StoreError>> {
        ready(Ok(None))
    }

    fn outbox_pending(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        ready(Ok(0))
    }
}
