//! Stores: where models live, with their hooks run around each write and their model
//! events published after each commit.
//!
//! | store | constructor | needs |
//! | --- | --- | --- |
//! | memory (the default) | [`Store::memory`] | nothing; gone when the process ends |
//! | SQLite | [`Store::sqlite`] | the `sqlite` feature (on by default); a file |
//! | PostgreSQL | [`Store::postgres`] | the `postgres` feature; a server |
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
//! [`ModelEvent`] only after it commits. On SQL stores the event is written to the
//! `<prefix>outbox` table in the same transaction as the model; a relay task publishes
//! unsent rows in order and marks them sent. A crash between the commit and the publish
//! loses nothing: the next store opened on the database publishes the row, once. (A crash
//! after the publish and before the row is marked sent publishes it again on restart, with
//! the same event id.) On PostgreSQL several processes may relay from one database: rows
//! are taken with `FOR UPDATE SKIP LOCKED`. The memory store publishes after its commit
//! directly.
//!
//! ## Transactions
//!
//! [`Store::transaction`] groups writes: before-hooks run as each write is made; if any
//! hook vetoes or the closure returns an error, every write is rolled back, no after-hook
//! runs and no event is published. After-hooks and events follow the commit.
//! `create_many`, `update_many` and `delete_many` run in one transaction. Reads inside a
//! transaction ([`Store::get`] through the hook context) see committed data only.

// Without a SQL feature only the memory store is built; the SQL helpers rest unused.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, irrefutable_let_patterns)
)]

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::event::Envelope;
use crate::executor::panic_message;
use crate::model::{HookError, Model, ModelEvent, Operation};
use crate::util::lock;
use hooks::hooks_for;

mod hooks;

pub use hooks::{HookContext, HookInvoke, HookRecord, MutHook, RefHook};

/// What went wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A before-hook refused or failed: nothing was written.
    #[error("{operation} of {model} vetoed by hook `{hook}`: {message}")]
    Vetoed {
        /// The hook's name.
        hook: String,
        /// The model's name.
        model: &'static str,
        /// The operation.
        operation: Operation,
        /// The hook's message.
        message: String,
        /// Whether the hook refused deliberately ([`HookError::veto`]).
        deliberate: bool,
    },
    /// The model has no id (it was never stored).
    #[error("{operation} of {model} needs a stored model, but this one has no id")]
    NoId {
        /// The model's name.
        model: &'static str,
        /// The operation.
        operation: Operation,
    },
    /// No row with this id.
    #[error("no {model} with id {id}")]
    NotFound {
        /// The model's name.
        model: &'static str,
        /// The id.
        id: i64,
    },
    /// The model cannot be turned into JSON or back.
    #[error("{model} cannot be (de)serialized: {source}")]
    Serde {
        /// The model's name.
        model: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// The transaction was used after it ended.
    #[error("the transaction has already ended")]
    Ended,
    /// The closure given to [`Store::transaction`] failed.
    #[error("transaction rolled back: {0}")]
    Aborted(String),
}

impl StoreError {
    /// Aborts a [`Store::transaction`] with a message of yours.
    pub fn abort(reason: impl std::fmt::Display) -> Self {
        StoreError::Aborted(reason.to_string())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// What a store did since it opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions rolled back (a veto, an error in the closure).
    pub rollbacks: u64,
    /// After-hooks that failed (the write stayed committed).
    pub after_hook_errors: u64,
    /// Model events published.
    pub events_published: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    rollbacks: AtomicU64,
    after_hook_errors: AtomicU64,
    events_published: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Default)]
struct MemDb {
    tables: HashMap<&'static str, BTreeMap<i64, Value>>,
    next_id: HashMap<&'static str, i64>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(dead_code))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    Sqlite,
    Postgres,
}

enum Db {
    Memory(Mutex<MemDb>),
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Sql {
        pool: sqlx::AnyPool,
        flavor: Flavor,
    },
}

struct Inner {
    bus: EventBus,
    db: Db,
    prefix: String,
    ensured: Mutex<HashSet<&'static str>>,
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
/// # struct Note { id: Option<i64>, text: String }
/// # impl Model for Note {
/// #     const NAME: &'static str = "note";
/// #     fn id(&self) -> Option<i64> { self.id }
/// #     fn set_id(&mut self, id: i64) { self.id = Some(id) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
/// let store = Store::memory(&bus);
/// let note = store.create(Note { id: None, text: "hello".into() }).await?;
/// assert_eq!(note.id, Some(1));
/// assert_eq!(store.get::<Note>(1).await?.map(|n| n.text), Some("hello".into()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Options of a store; see [`Store::builder`].
#[must_use]
pub struct StoreBuilder {
    bus: EventBus,
    prefix: String,
    relay: bool,
    relay_interval: Duration,
}

impl StoreBuilder {
    /// Prefix of the store's tables (default `eventflow_`): letters, digits, `_`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Runs the outbox relay (default on). Off, events wait in the outbox until a store
    /// with a relay, or [`Store::relay_now`], publishes them.
    pub fn relay(mut self, on: bool) -> Self {
        self.relay = on;
        self
    }

    /// How often the relay looks for unsent events besides being woken by each commit
    /// (default 500ms).
    pub fn relay_interval(mut self, every: Duration) -> Self {
        self.relay_interval = every;
        self
    }

    /// An in-memory store.
    pub fn memory(self) -> Store {
        self.open(Db::Memory(Mutex::default()))
    }

    /// A SQLite store in the file at `path` (created if missing, in WAL mode).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(self, path: impl AsRef<std::path::Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().display().to_string();
        let url = format!("sqlite://{path}?mode=rwc");
        self.connect(&url, Flavor::Sqlite, 4).await
    }

    /// A PostgreSQL store at `url` (`postgres://user@host/db`).
    #[cfg(feature = "postgres")]
    pub async fn postgres(self, url: &str) -> Result<Store, StoreError> {
        self.connect(url, Flavor::Postgres, 8).await
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    async fn connect(self, url: &str, flavor: Flavor, max: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        check_identifier(&self.prefix)?;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot open {flavor:?} store: {e}")))?;
        if flavor == Flavor::Sqlite {
            // Readers do not wait for writers. (Set before anything else runs: the change
            // needs a lock that the busy timeout does not wait for.)
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        let relay = self.relay;
        let interval = self.relay_interval;
        let store = self.open(Db::Sql { pool, flavor });
        store.ensure_outbox().await?;
        for m in inventory::iter::<crate::model::ModelRecord> {
            store.ensure_table(m.name).await?;
        }
        if relay {
            tokio::spawn(relay_loop(
                Arc::downgrade(&store.inner),
                store.inner.relay.clone(),
                store.inner.stop.clone(),
                interval,
            ));
            // Events a previous process left in the outbox go out now.
            store.inner.relay.notify_one();
        }
        Ok(store)
    }

    fn open(self, db: Db) -> Store {
        // Builds every model's hook chains from the registry now, not on the first write.
        let _ = hooks_for(TypeId::of::<()>(), crate::model::HookKind::BeforeWrite);
        Store {
            inner: Arc::new(Inner {
                bus: self.bus,
                db,
                prefix: self.prefix,
                ensured: Mutex::default(),
                counters: Counters::default(),
                relay: Arc::new(Notify::new()),
                stop: CancellationToken::new(),
            }),
        }
    }
}

fn check_identifier(s: &str) -> Result<(), StoreError> {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "`{s}` cannot be part of a table name: use letters, digits and `_`"
        )))
    }
}

/// The table of a model: `<prefix>m_<name>` with every other character made `_`.
fn table_name(prefix: &str, model: &str) -> String {
    let name: String = model
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}m_{name}")
}

impl Store {
    /// Options: table prefix, relay.
    pub fn builder(bus: &EventBus) -> StoreBuilder {
        StoreBuilder {
            bus: bus.clone(),
            prefix: "eventflow_".into(),
            relay: true,
            relay_interval: Duration::from_millis(500),
        }
    }

    /// An in-memory store publishing on `bus`.
    pub fn memory(bus: &EventBus) -> Store {
        Store::builder(bus).memory()
    }

    /// A SQLite store in the file at `path`, publishing on `bus`.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(
        path: impl AsRef<std::path::Path>,
        bus: &EventBus,
    ) -> Result<Store, StoreError> {
        Store::builder(bus).sqlite(path).await
    }

    /// A PostgreSQL store at `url`, publishing on `bus`.
    #[cfg(feature = "postgres")]
    pub async fn postgres(url: &str, bus: &EventBus) -> Result<Store, StoreError> {
        Store::builder(bus).postgres(url).await
    }

    /// The prefix of the store's tables.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bus model events go to.
    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
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
        let doc = match &self.inner.db {
            Db::Memory(mem) => lock(mem)
                .tables
                .get(M::NAME)
                .and_then(|t| t.get(&id))
                .cloned(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Db::Sql { pool, flavor } => {
                self.ensure_table(M::NAME).await?;
                let sql = select_doc_sql(*flavor, &self.inner.prefix, M::NAME);
                let row: Option<(String,)> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
                match row {
                    Some((text,)) => Some(parse_doc::<M>(&text)?),
                    None => None,
                }
            }
        };
        doc.map(|d| from_doc::<M>(d, id)).transpose()
    }

    /// Every stored model of this type, by id.
    pub async fn all<M: Model>(&self) -> Result<Vec<M>, StoreError> {
        let rows: Vec<(i64, Value)> = match &self.inner.db {
            Db::Memory(mem) => lock(mem)
                .tables
                .get(M::NAME)
                .map(|t| t.iter().map(|(k, v)| (*k, v.clone())).collect())
                .unwrap_or_default(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Db::Sql { pool, flavor } => {
                self.ensure_table(M::NAME).await?;
                let sql = format!(
                    "SELECT id, {} FROM {} ORDER BY id",
                    doc_column(*flavor),
                    table_name(&self.inner.prefix, M::NAME)
                );
                let rows: Vec<(i64, String)> = sqlx::query_as(&sql).fetch_all(pool).await?;
                rows.into_iter()
                    .map(|(id, text)| Ok((id, parse_doc::<M>(&text)?)))
                    .collect::<Result<_, StoreError>>()?
            }
        };
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
    /// # struct Note { id: Option<i64>, text: String }
    /// # impl Model for Note {
    /// #     const NAME: &'static str = "note";
    /// #     fn id(&self) -> Option<i64> { self.id }
    /// #     fn set_id(&mut self, id: i64) { self.id = Some(id) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
    /// let store = Store::memory(&bus);
    /// let result = store
    ///     .transaction(|tx| async move {
    ///         tx.create(Note { id: None, text: "kept only if all succeed".into() }).await?;
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
        let tx = self.begin().await?;
        let result = f(tx.clone()).await;
        let state = tx.take()?;
        match result {
            Ok(value) => {
                self.commit(state).await?;
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
            let n = relay_once(&self.inner).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Drops the store's tables (the outbox and those of every model it has used or
    /// knows of): everything stored is lost. For tests and tear-downs.
    pub async fn drop_tables(&self) -> Result<(), StoreError> {
        match &self.inner.db {
            Db::Memory(mem) => *lock(mem) = MemDb::default(),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Db::Sql { pool, .. } => {
                let mut tables: Vec<String> = lock(&self.inner.ensured)
                    .iter()
                    .map(|m| table_name(&self.inner.prefix, m))
                    .collect();
                tables.extend(
                    inventory::iter::<crate::model::ModelRecord>
                        .into_iter()
                        .map(|m| table_name(&self.inner.prefix, m.name)),
                );
                tables.push(format!("{}outbox", self.inner.prefix));
                tables.sort();
                tables.dedup();
                for t in tables {
                    sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
                        .execute(pool)
                        .await?;
                }
                lock(&self.inner.ensured).clear();
            }
        }
        Ok(())
    }

    /// Events written to the outbox and not yet published (0 for the memory store).
    pub async fn outbox_pending(&self) -> Result<u64, StoreError> {
        match &self.inner.db {
            Db::Memory(_) => Ok(0),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Db::Sql { pool, .. } => {
                let sql = format!(
                    "SELECT COUNT(*) FROM {}outbox WHERE sent_at IS NULL",
                    self.inner.prefix
                );
                let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(pool).await?;
                Ok(n.max(0) as u64)
            }
        }
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        let db = match &self.inner.db {
            Db::Memory(_) => TxDb::Memory(Vec::new()),
            // SQLite: take the write lock at once, so that a transaction that reads then
            // writes never fails to upgrade its lock; others wait (busy timeout 5s).
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Db::Sql { pool, flavor } => TxDb::Sql(match flavor {
                Flavor::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
                Flavor::Postgres => pool.begin().await?,
            }),
        };
        Ok(Tx {
            store: self.clone(),
            state: Arc::new(tokio::sync::Mutex::new(Some(TxState {
                db,
                after: Vec::new(),
                events: Vec::new(),
                tables: Vec::new(),
            }))),
        })
    }

    async fn commit(&self, state: TxState) -> Result<(), StoreError> {
        let TxState {
            db,
            after,
            events,
            tables,
        } = state;
        match db {
            TxDb::Memory(ops) => {
                if let Db::Memory(mem) = &self.inner.db {
                    let mut mem = lock(mem);
                    for op in ops {
                        match op {
                            MemOp::Put(model, id, doc) => {
                                mem.tables.entry(model).or_default().insert(id, doc);
                            }
                            MemOp::Remove(model, id) => {
                                mem.tables.entry(model).or_default().remove(&id);
                            }
                        }
                    }
                }
            }
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                tx.commit().await?;
                // The outbox rows are committed: the relay can publish them now.
                self.inner.relay.notify_one();
            }
        }
        bump(&self.inner.counters.commits);
        lock(&self.inner.ensured).extend(tables);
        for run in after {
            run(self.clone()).await;
        }
        // The memory store has no outbox: its events go out now, in order.
        for env in events {
            match self.inner.bus.publish_envelope(env).await {
                Ok(()) => bump(&self.inner.counters.events_published),
                Err(e) => {
                    tracing::error!(error = %e, "eventflow: a model event could not be published")
                }
            }
        }
        Ok(())
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    async fn ensure_outbox(&self) -> Result<(), StoreError> {
        let Db::Sql { pool, flavor } = &self.inner.db else {
            return Ok(());
        };
        let (seq, big) = match flavor {
            Flavor::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
            Flavor::Postgres => ("BIGSERIAL PRIMARY KEY", "BIGINT"),
        };
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {}outbox (seq {seq}, event_id TEXT NOT NULL UNIQUE, \
             name TEXT NOT NULL, envelope TEXT NOT NULL, created_at {big} NOT NULL, \
             sent_at {big}, error TEXT)",
            self.inner.prefix
        );
        sqlx::query(&sql).execute(pool).await?;
        Ok(())
    }

    async fn ensure_table(&self, model: &'static str) -> Result<(), StoreError> {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let Db::Sql { pool, flavor } = &self.inner.db {
            if lock(&self.inner.ensured).contains(model) {
                return Ok(());
            }
            sqlx::query(&self.create_table_sql(*flavor, model))
                .execute(pool)
                .await?;
            lock(&self.inner.ensured).insert(model);
        }
        let _ = model;
        Ok(())
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn create_table_sql(&self, flavor: Flavor, model: &str) -> String {
        let (id, doc) = match flavor {
            Flavor::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT"),
            Flavor::Postgres => ("BIGSERIAL PRIMARY KEY", "JSONB"),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id {id}, doc {doc} NOT NULL)",
            table_name(&self.inner.prefix, model)
        )
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn flavor(&self) -> Option<Flavor> {
        match &self.inner.db {
            Db::Sql { flavor, .. } => Some(*flavor),
            Db::Memory(_) => None,
        }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn doc_column(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Sqlite => "doc",
        Flavor::Postgres => "doc::text",
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn select_doc_sql(flavor: Flavor, prefix: &str, model: &str) -> String {
    format!(
        "SELECT {} FROM {} WHERE id = $1",
        doc_column(flavor),
        table_name(prefix, model)
    )
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn doc_param(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Sqlite => "$1",
        Flavor::Postgres => "$1::jsonb",
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn parse_doc<M: Model>(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Serde {
        model: M::NAME,
        source,
    })
}

fn to_doc<M: Model>(m: &M) -> Result<Value, StoreError> {
    serde_json::to_value(m).map_err(|source| StoreError::Serde {
        model: M::NAME,
        source,
    })
}

fn from_doc<M: Model>(doc: Value, id: i64) -> Result<M, StoreError> {
    let mut m: M = serde_json::from_value(doc).map_err(|source| StoreError::Serde {
        model: M::NAME,
        source,
    })?;
    m.set_id(id);
    Ok(m)
}

/// The top-level fields whose values differ.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        _ if old != new => vec![String::new()],
        _ => Vec::new(),
    }
}

enum MemOp {
    Put(&'static str, i64, Value),
    Remove(&'static str, i64),
}

enum TxDb {
    Memory(Vec<MemOp>),
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    Sql(sqlx::Transaction<'static, sqlx::Any>),
}

type AfterCommit = Box<dyn FnOnce(Store) -> crate::util::BoxFuture<'static, ()> + Send>;

struct TxState {
    db: TxDb,
    after: Vec<AfterCommit>,
    /// Events of the memory store, published after the commit.
    events: Vec<Envelope>,
    /// Tables this transaction created (known to exist once it commits).
    tables: Vec<&'static str>,
}

impl TxState {
    async fn rollback(self) {
        match self.db {
            TxDb::Memory(_) => {}
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                if let Err(e) = tx.rollback().await {
                    tracing::error!(error = %e, "eventflow: rollback failed");
                }
            }
        }
    }
}

/// A running transaction of [`Store::transaction`]. Cheap to clone; it ends when the
/// closure returns.
#[derive(Clone)]
pub struct Tx {
    store: Store,
    state: Arc<tokio::sync::Mutex<Option<TxState>>>,
}

impl Tx {
    fn take(&self) -> Result<TxState, StoreError> {
        self.state
            .try_lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or(StoreError::Ended)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates `model` in this transaction.
    pub async fn create<M: Model>(&self, mut model: M) -> Result<M, StoreError> {
        let op = Operation::Create;
        run_before(&self.store, op, &mut model).await?;
        let doc = to_doc(&model)?;
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        self.ensure_table(state, M::NAME).await?;
        let id = match &mut state.db {
            TxDb::Memory(ops) => {
                let id = match &self.store.inner.db {
                    Db::Memory(mem) => {
                        let mut mem = lock(mem);
                        let next = mem.next_id.entry(M::NAME).or_insert(0);
                        *next += 1;
                        *next
                    }
                    #[cfg(any(feature = "sqlite", feature = "postgres"))]
                    Db::Sql { .. } => return Err(StoreError::Ended),
                };
                ops.push(MemOp::Put(M::NAME, id, doc));
                id
            }
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                let flavor = self.store.flavor().ok_or(StoreError::Ended)?;
                let sql = format!(
                    "INSERT INTO {} (doc) VALUES ({}) RETURNING id",
                    table_name(&self.store.inner.prefix, M::NAME),
                    doc_param(flavor)
                );
                let (id,): (i64,) = sqlx::query_as(&sql)
                    .bind(doc.to_string())
                    .fetch_one(&mut **tx)
                    .await?;
                id
            }
        };
        model.set_id(id);
        self.written(state, op, model.clone(), Vec::new()).await?;
        Ok(model)
    }

    /// Updates the stored `model` in this transaction; returns it as written.
    pub async fn update<M: Model>(&self, model: &M) -> Result<M, StoreError> {
        let op = Operation::Update;
        let id = model.id().ok_or(StoreError::NoId {
            model: M::NAME,
            operation: op,
        })?;
        let mut model = model.clone();
        run_before(&self.store, op, &mut model).await?;
        model.set_id(id);
        let doc = to_doc(&model)?;
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        self.ensure_table(state, M::NAME).await?;
        let old = self.current(state, M::NAME, id).await?;
        let old = old.ok_or(StoreError::NotFound { model: M::NAME, id })?;
        // The stored document may lack the id the row carries: compare as models.
        let old = to_doc(&from_doc::<M>(old, id)?)?;
        let changed = changed_fields(&old, &doc);
        match &mut state.db {
            TxDb::Memory(ops) => ops.push(MemOp::Put(M::NAME, id, doc)),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                let flavor = self.store.flavor().ok_or(StoreError::Ended)?;
                let sql = format!(
                    "UPDATE {} SET doc = {} WHERE id = $2",
                    table_name(&self.store.inner.prefix, M::NAME),
                    doc_param(flavor)
                );
                sqlx::query(&sql)
                    .bind(doc.to_string())
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        self.written(state, op, model.clone(), changed).await?;
        Ok(model)
    }

    /// Deletes the stored `model` in this transaction.
    pub async fn delete<M: Model>(&self, model: &M) -> Result<(), StoreError> {
        let op = Operation::Delete;
        let id = model.id().ok_or(StoreError::NoId {
            model: M::NAME,
            operation: op,
        })?;
        let mut model = model.clone();
        run_before(&self.store, op, &mut model).await?;
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        self.ensure_table(state, M::NAME).await?;
        if self.current(state, M::NAME, id).await?.is_none() {
            return Err(StoreError::NotFound { model: M::NAME, id });
        }
        match &mut state.db {
            TxDb::Memory(ops) => ops.push(MemOp::Remove(M::NAME, id)),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                let sql = format!(
                    "DELETE FROM {} WHERE id = $1",
                    table_name(&self.store.inner.prefix, M::NAME)
                );
                sqlx::query(&sql).bind(id).execute(&mut **tx).await?;
            }
        }
        self.written(state, op, model, Vec::new()).await
    }

    /// Creates the model's table inside the transaction if it may not exist (taking a
    /// pool connection here would wait for this transaction's own lock on SQLite).
    async fn ensure_table(
        &self,
        state: &mut TxState,
        model: &'static str,
    ) -> Result<(), StoreError> {
        #[cfg(any(feature = "sqlite", feature = "postgres"))]
        if let (TxDb::Sql(tx), Some(flavor)) = (&mut state.db, self.store.flavor()) {
            if lock(&self.store.inner.ensured).contains(model) || state.tables.contains(&model) {
                return Ok(());
            }
            sqlx::query(&self.store.create_table_sql(flavor, model))
                .execute(&mut **tx)
                .await?;
            state.tables.push(model);
        }
        let _ = (state, model);
        Ok(())
    }

    /// The document with this id as this transaction sees it.
    async fn current(
        &self,
        state: &mut TxState,
        model: &'static str,
        id: i64,
    ) -> Result<Option<Value>, StoreError> {
        match &mut state.db {
            TxDb::Memory(ops) => {
                let staged = ops.iter().rev().find_map(|op| match op {
                    MemOp::Put(m, i, doc) if *m == model && *i == id => Some(Some(doc.clone())),
                    MemOp::Remove(m, i) if *m == model && *i == id => Some(None),
                    _ => None,
                });
                Ok(match staged {
                    Some(doc) => doc,
                    None => match &self.store.inner.db {
                        Db::Memory(mem) => lock(mem)
                            .tables
                            .get(model)
                            .and_then(|t| t.get(&id))
                            .cloned(),
                        #[cfg(any(feature = "sqlite", feature = "postgres"))]
                        Db::Sql { .. } => None,
                    },
                })
            }
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                let flavor = self.store.flavor().ok_or(StoreError::Ended)?;
                let sql = select_doc_sql(flavor, &self.store.inner.prefix, model);
                let row: Option<(String,)> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.map(|(text,)| {
                    serde_json::from_str(&text)
                        .map_err(|source| StoreError::Serde { model, source })
                })
                .transpose()
            }
        }
    }

    /// Records the model event (outbox or pending) and the after-hooks of a write.
    async fn written<M: Model>(
        &self,
        state: &mut TxState,
        op: Operation,
        model: M,
        changed: Vec<String>,
    ) -> Result<(), StoreError> {
        let event = ModelEvent {
            kind: op.event(),
            model: model.clone(),
            changed,
        };
        match &mut state.db {
            TxDb::Memory(_) => state.events.push(event.envelope()),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            TxDb::Sql(tx) => {
                let name = event.name();
                let env = Envelope::with_payload(
                    crate::event::EventName::from(name.as_str()),
                    crate::event::Payload::json(serde_json::to_value(&event).map_err(
                        |source| StoreError::Serde {
                            model: M::NAME,
                            source,
                        },
                    )?),
                );
                let json = serde_json::to_string(&env).map_err(|source| StoreError::Serde {
                    model: M::NAME,
                    source,
                })?;
                let sql = format!(
                    "INSERT INTO {}outbox (event_id, name, envelope, created_at) VALUES ($1, $2, $3, $4)",
                    self.store.inner.prefix
                );
                sqlx::query(&sql)
                    .bind(env.id.to_string())
                    .bind(name)
                    .bind(json)
                    .bind(i64::try_from(crate::util::now_ms()).unwrap_or(i64::MAX))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        state.after.push(Box::new(move |store: Store| {
            Box::pin(async move { run_after(&store, op, &model).await })
        }));
        Ok(())
    }
}

async fn call_hook(
    invoke: HookInvoke,
    model: &mut (dyn Any + Send + Sync),
    ctx: &HookContext,
) -> Result<(), HookError> {
    let fut = match invoke {
        HookInvoke::Mut(f) => f(model, ctx),
        HookInvoke::Ref(f) => f(&*model, ctx),
    };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => Err(HookError::msg(format!(
            "the hook panicked: {}",
            panic_message(&*p)
        ))),
    }
}

async fn run_before<M: Model>(
    store: &Store,
    op: Operation,
    model: &mut M,
) -> Result<(), StoreError> {
    for &kind in op.before() {
        for h in hooks_for(TypeId::of::<M>(), kind) {
            let ctx = HookContext {
                operation: op,
                kind,
                store: store.clone(),
            };
            if let Err(e) = call_hook(h.invoke, model, &ctx).await {
                return Err(StoreError::Vetoed {
                    hook: h.name.to_owned(),
                    model: M::NAME,
                    operation: op,
                    message: e.message().to_owned(),
                    deliberate: e.is_veto(),
                });
            }
        }
    }
    Ok(())
}

async fn run_after<M: Model>(store: &Store, op: Operation, model: &M) {
    // After-hooks take `&self`; a copy keeps the `&mut` entry point from changing the
    // model the caller got back.
    let mut copy = model.clone();
    for &kind in op.after() {
        for h in hooks_for(TypeId::of::<M>(), kind) {
            let ctx = HookContext {
                operation: op,
                kind,
                store: store.clone(),
            };
            if let Err(e) = call_hook(h.invoke, &mut copy, &ctx).await {
                bump(&store.inner.counters.after_hook_errors);
                tracing::error!(hook = h.name, model = M::NAME, operation = %op, error = %e,
                    "eventflow: after-hook failed; the write stays committed");
            }
        }
    }
}

async fn relay_loop(
    store: Weak<Inner>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    every: Duration,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        loop {
            match relay_once(&inner).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "eventflow: outbox relay failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Publishes up to 100 unsent outbox rows in order and marks them sent; returns how many.
async fn relay_once(inner: &Inner) -> Result<usize, StoreError> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    if let Db::Sql { pool, flavor } = &inner.db {
        let lock_rows = match flavor {
            Flavor::Sqlite => "",
            Flavor::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let mut tx = match flavor {
            Flavor::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Flavor::Postgres => pool.begin().await?,
        };
        let sql = format!(
            "SELECT seq, envelope FROM {}outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 100{lock_rows}",
            inner.prefix
        );
        let rows: Vec<(i64, String)> = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
        let mark = format!(
            "UPDATE {}outbox SET sent_at = $1, error = $2 WHERE seq = $3",
            inner.prefix
        );
        let mut done = 0;
        for (seq, json) in rows {
            let error = match serde_json::from_str::<Envelope>(&json) {
                Ok(env) => match inner.bus.publish_envelope(env).await {
                    Ok(()) => {
                        bump(&inner.counters.events_published);
                        None
                    }
                    Err(e) => {
                        // The row stays unsent; what is marked so far is committed.
                        tracing::warn!(error = %e, "eventflow: cannot publish a model event yet");
                        break;
                    }
                },
                Err(e) => {
                    tracing::error!(seq, error = %e, "eventflow: a malformed outbox row is set aside");
                    Some(e.to_string())
                }
            };
            sqlx::query(&mark)
                .bind(i64::try_from(crate::util::now_ms()).unwrap_or(i64::MAX))
                .bind(error)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            done += 1;
        }
        tx.commit().await?;
        return Ok(done);
    }
    let _ = inner;
    Ok(0)
}
