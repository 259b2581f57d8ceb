//! Stores: where models live, with their hooks run around each write and their model
//! events published after each commit.
//!
//! | store | constructor | needs |
//! | --- | --- | --- |
//! | memory (the default) | [`Store::memory`] | nothing; gone when the process ends |
//! | SQLite | `Store::sqlite` (`eventflow::sql`) | the `sqlite` feature of `eventflow` (on by default); a file |
//! | PostgreSQL | `Store::postgres` (`eventflow::sql`) | the `postgres` feature of `eventflow`; a server |
//! | any other database | [`StoreBuilder::driver`] with a [`StoreDriver`] | a driver |
//!
//! ## Rows
//!
//! Each model type has a table `<prefix>m_<name>` with an integer `id` the database assigns
//! and the model as one JSON document (`TEXT` on SQLite, `JSONB` on PostgreSQL). A
//! document column keeps every model storable without migrations or a per-type schema in
//! the derive, and the same on all three stores; PostgreSQL can still index fields of it
//! (`CREATE INDEX ... ((doc->>'email'))`). Tables are created when the store opens (for
//! registered models) or on first use.
//!
//! ## Model events and the outbox
//!
//! A write publishes `<model>.created`, `.updated` or `.deleted` with a
//! [`ModelEvent`](crate::ModelEvent) only after it commits. On SQL stores the event is written to the
//! `<prefix>outbox` table in the same transaction as the model; a relay task publishes
//! unsent rows in order and marks them sent. A crash between the commit and the publish
//! loses nothing: the next store opened on the database publishes the row, once. (A crash
//! after the publish and before the row is marked sent publishes it again on restart, with
//! the same event id.) On PostgreSQL several processes may relay from one database: rows
//! are taken with `FOR UPDATE SKIP LOCKED`. The memory store publishes after its commit
//! directly.
//!
//! A model event that cannot be published never holds up the ones after it. What happens
//! depends on why, the same on every store:
//!
//! | the publish fails because | then | counted in [`StoreStats`] |
//! | --- | --- | --- |
//! | no handler matches (on a bus whose backend delivers in this process only, without `allow_unhandled`; on Redis the event is published, for whichever worker has a handler) | skipped; an outbox row is marked `skipped: ...` | `events_unhandled` |
//! | the bus refuses it whatever the moment (too large, invalid name) or the row is malformed | set aside; the row keeps the reason in its `error` column | `events_set_aside` |
//! | the backend cannot be reached, the bus is shut down | kept and retried: the relay backs off from its interval, doubling up to 30 s; [`Store::relay_now`] returns [`StoreError::Publish`] | `publish_retries` |
//!
//! The memory store has no outbox: it retries such a failure five times over about 1.5 s
//! while the commit returns, then gives the event up (logged, and counted in
//! `events_set_aside`); on a bus that is shut down it gives it up at once.
//!
//! ## Transactions
//!
//! [`Store::transaction`] groups writes: before-hooks run as each write is made; if any
//! hook vetoes or the closure returns an error, every write is rolled back, no after-hook
//! runs and no event is published. After-hooks and events follow the commit.
//! `create_many`, `update_many` and `delete_many` run in one transaction. Reads inside a
//! transaction ([`Store::get`] through the hook context) see committed data only.

//!
//! ## Files
//!
//! The API is here; [`builder`](StoreBuilder) opens a store, `tx` runs a transaction's
//! writes, `hooks` runs the lifecycle hooks, `relay` publishes the outbox, `doc` maps models
//! to documents, [`driver`] is the seam to a database and `memory` is the memory driver.

use std::any::TypeId;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::model::Model;

mod builder;
mod doc;
pub mod driver;
mod error;
mod hooks;
mod memory;
mod relay;
mod tx;

pub use builder::StoreBuilder;
pub use driver::{DriverTx, OutboxBatch, OutboxRow, StoreDriver};
pub use error::{DatabaseSource, StoreError};
pub use hooks::{HookContext, HookInvoke, HookRecord, MutHook, RefHook};
pub use memory::MemoryDriver;
pub use tx::Tx;

use doc::{from_doc, table_name};

/// What a store did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back (a veto, an error in the closure).
    pub rollbacks: u64,
    /// After-hooks that failed (the write stayed committed).
    pub after_hook_errors: u64,
    /// Model events published.
    pub events_published: u64,
    /// Model events skipped because no handler matches them (on a bus that does not
    /// [`allow_unhandled`](crate::EventBusBuilder::allow_unhandled)); the events after
    /// them are published. In an outbox their rows are marked with the reason.
    pub events_unhandled: u64,
    /// Model events that can never be published (a malformed outbox row, an event the bus
    /// refuses whatever the moment: too large, an invalid name), set aside with the reason.
    pub events_set_aside: u64,
    /// Times a publish failed for a reason that may pass (the backend cannot be reached,
    /// the bus is shut down): the outbox keeps the event and retries it with backoff.
    pub publish_retries: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    rollbacks: AtomicU64,
    after_hook_errors: AtomicU64,
    events_published: AtomicU64,
    events_unhandled: AtomicU64,
    events_set_aside: AtomicU64,
    publish_retries: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct Inner {
    bus: EventBus,
    driver: Box<dyn StoreDriver>,
    prefix: String,
    counters: Counters,
    relay: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A store of models. Cheap to clone. See the [module documentation](self).
///
/// ```
/// use eventflow_runtime::{EventBus, Model, Store};
/// # #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// # struct Note {id: Option<i64>, text: String }
/// # impl Model for Note {
/// #     const NAME: &'static str = "note";
/// #     fn id(&self) -> Option<i64> {self.id }
/// #     fn set_id(&mut self, id: i64) {self.id = Some(id) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
/// let store = Store::memory(&bus);
/// let note = store.create(Note {id: None, text: "hello".into() }).await?;
/// assert_eq!(note.id, Some(1));
/// assert_eq!(store.get::<Note>(1).await?.map(|n| n.text), Some("hello".into()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("driver", &self.inner.driver.name())
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Options: table prefix, relay, driver.
    pub fn builder(bus: &EventBus) -> StoreBuilder {
        StoreBuilder::new(bus.clone())
    }

    /// An in-memory store publishing on `bus`.
    pub fn memory(bus: &EventBus) -> Store {
        Store::builder(bus).memory()
    }

    /// The prefix of the store's tables.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bus model events go to.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The driver's name (`memory`, `sqlite`, `postgres`).
    pub fn driver_name(&self) -> &'static str {
        self.inner.driver.name()
    }

    /// What the store did.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            commits: get(&c.commits),
            rollbacks: get(&c.rollbacks),
            after_hook_errors: get(&c.after_hook_errors),
            events_published: get(&c.events_published),
            events_unhandled: get(&c.events_unhandled),
            events_set_aside: get(&c.events_set_aside),
            publish_retries: get(&c.publish_retries),
        }
    }

    /// Creates `model` (running its hooks) and returns it with its id.
    pub async fn create<M: Model>(&self, model: M) -> Result<M, StoreError> {
        self.transaction(|tx| async move { tx.create(model).await })
            .await
    }

    /// Updates the stored `model` (running its hooks) and returns it as written.
    pub async fn update<M: Model>(&self, model: &M) -> Result<M, StoreError> {
        let model = model.clone();
        self.transaction(|tx| async move { tx.update(&model).await })
            .await
    }

    /// Deletes the stored `model` (running its hooks).
    pub async fn delete<M: Model>(&self, model: &M) -> Result<(), StoreError> {
        let model = model.clone();
        self.transaction(|tx| async move { tx.delete(&model).await })
            .await
    }

    /// Creates every model in one transaction: one veto writes none of them.
    pub async fn create_many<M: Model>(&self, models: Vec<M>) -> Result<Vec<M>, StoreError> {
        self.transaction(|tx| async move {
            let mut out = Vec::with_capacity(models.len());
            for m in models {
                out.push(tx.create(m).await?);
            }
            Ok(out)
        })
        .await
    }

    /// Updates every model in one transaction.
    pub async fn update_many<M: Model>(&self, models: &[M]) -> Result<Vec<M>, StoreError> {
        let models = models.to_vec();
        self.transaction(|tx| async move {
            let mut out = Vec::with_capacity(models.len());
            for m in &models {
                out.push(tx.update(m).await?);
            }
            Ok(out)
        })
        .await
    }

    /// Deletes every model in one transaction.
    pub async fn delete_many<M: Model>(&self, models: &[M]) -> Result<(), StoreError> {
        let models = models.to_vec();
        self.transaction(|tx| async move {
            for m in &models {
                tx.delete(m).await?;
            }
            Ok(())
        })
        .await
    }

    /// The model with this id.
    pub async fn get<M: Model>(&self, id: i64) -> Result<Option<M>, StoreError> {
        let table = self.table(M::NAME);
        let doc = self.inner.driver.get(&table, id).await?;
        doc.map(|d| from_doc::<M>(d, id)).transpose()
    }

    /// Every stored model of this type, by id.
    pub async fn all<M: Model>(&self) -> Result<Vec<M>, StoreError> {
        let table = self.table(M::NAME);
        let rows = self.inner.driver.all(&table).await?;
        rows.into_iter()
            .map(|(id, d)| from_doc::<M>(d, id))
            .collect()
    }

    /// Runs `f` in one transaction; see the [module documentation](self). The closure's
    /// error rolls every write back and is returned.
    ///
    /// ```
    /// # use eventflow_runtime::{EventBus, Model, Store, StoreError};
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// # struct Note {id: Option<i64>, text: String }
    /// # impl Model for Note {
    /// #     const NAME: &'static str = "note";
    /// #     fn id(&self) -> Option<i64> {self.id }
    /// #     fn set_id(&mut self, id: i64) {self.id = Some(id) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
    /// let store = Store::memory(&bus);
    /// let result = store
    ///     .transaction(|tx| async move {
    ///         tx.create(Note {id: None, text: "kept only if all succeed".into() }).await?;
    ///         Err::<(), _>(StoreError::abort("changed my mind"))
    ///     })
    ///     .await;
    /// assert!(result.is_err());
    /// assert!(store.all::<Note>().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let tx = Tx::begin(self).await?;
        let result = f(tx.clone()).await;
        let state = tx.take()?;
        match result {
            Ok(value) => {
                state.commit(self).await?;
                Ok(value)
            }
            Err(e) => {
                state.rollback().await;
                bump(&self.inner.counters.rollbacks);
                Err(e)
            }
        }
    }

    /// Publishes the outbox's unsent events now; returns how many. The relay does this
    /// on its own; this is for tests and for stores opened with `relay(false)`.
    pub async fn relay_now(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = relay::relay_once(&self.inner).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Drops the store's tables (the outbox and those of every registered model): everything
    /// stored is lost. For tests and tear-downs.
    pub async fn drop_tables(&self) -> Result<(), StoreError> {
        let tables = registered_tables(&self.inner.prefix);
        self.inner.driver.drop_tables(&tables).await
    }

    /// Events written to the outbox and not yet published (0 for the memory store).
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        self.inner.driver.outbox_pending().await
    }

    fn table(&self, model: &str) -> String {
        table_name(&self.inner.prefix, model)
    }
}

/// The tables of every registered model under `prefix`.
fn registered_tables(prefix: &str) -> Vec<String> {
    let mut tables: Vec<String> = inventory::iter::<crate::model::ModelRecord>
        .into_iter()
        .map(|m| table_name(prefix, m.name))
        .collect();
    tables.sort();
    tables.dedup();
    tables
}

/// Builds every model's hook chains from the registry now, not on the first write.
fn warm_hooks() {
    let _ = hooks::hooks_for(TypeId::of::<()>(), crate::model::HookKind::BeforeWrite);
}
