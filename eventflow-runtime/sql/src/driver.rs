//! The SQL driver: one implementation over `sqlx`'s `Any` pool, with what differs between
//! the databases in `sqlite.rs` and `postgres.rs`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eventflow_runtime::store::{DriverTx, OutboxBatch, OutboxRow, StoreDriver};
use eventflow_runtime::{BoxFuture, Envelope, StoreError};
use serde_json::Value;

/// A database error, keeping sqlx's error as the source.
fn db(e: sqlx::Error) -> StoreError {
    StoreError::database(e.to_string(), e)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one insert or lookup: a poisoned set is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a database needs said its own way (`sqlite.rs`, `postgres.rs`).
pub(crate) struct Dialect {
    /// The driver's name.
    pub(crate) name: &'static str,
    /// Column type of a table's id.
    pub(crate) id_column: &'static str,
    /// Column type of a document.
    pub(crate) doc_column: &'static str,
    /// The integer type of the outbox's times.
    pub(crate) big: &'static str,
    /// Reading a document as text.
    pub(crate) doc_select: &'static str,
    /// Binding a document parameter.
    pub(crate) doc_param: &'static str,
    /// What locks the outbox rows a relay takes.
    pub(crate) lock_rows: &'static str,
    /// How a transaction begins (`None`: a plain `BEGIN`).
    pub(crate) begin: Option<&'static str>,
    /// Connections of the pool.
    pub(crate) max_connections: u32,
    /// A statement run once after connecting.
    pub(crate) after_connect: Option<&'static str>,
}

struct Shared {
    pool: sqlx::AnyPool,
    dialect: &'static Dialect,
    outbox: String,
    /// Tables known to exist.
    ensured: Mutex<HashSet<String>>,
}

/// A SQLite or PostgreSQL database as a [`StoreDriver`]. Usually made through
/// `Store::sqlite` / `Store::postgres` ([`SqlStoreExt`](crate::SqlStoreExt)).
#[derive(Clone)]
pub struct SqlDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDriver")
            .field("database", &self.shared.dialect.name)
            .field("outbox", &self.shared.outbox)
            .finish_non_exhaustive()
    }
}

/// The time now, in milliseconds since the Unix epoch, as the outbox stores it.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SqlDriver {
    /// A SQLite database in the file at `path` (created if missing, in WAL mode), with
    /// the outbox table `<prefix>outbox`. Needs the `sqlite` feature.
    #[cfg(feature = "sqlite")]
    pub async fn sqlite(path: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect(&crate::sqlite::url(path), &crate::sqlite::DIALECT, prefix).await
    }

    /// A PostgreSQL database at `url`, with the outbox table `<prefix>outbox`. Needs the `postgres` feature.
    #[cfg(feature = "postgres")]
    pub async fn postgres(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect(url, &crate::postgres::DIALECT, prefix).await
    }

    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    async fn connect(
        url: &str,
        dialect: &'static Dialect,
        prefix: &str,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(dialect.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| {
                StoreError::database(format!("cannot open {} store: {e}", dialect.name), e)
            })?;
        if let Some(sql) = dialect.after_connect {
            sqlx::query(sql).execute(&pool).await.map_err(db)?;
        }
        Ok(SqlDriver {
            shared: Arc::new(Shared {
                pool,
                dialect,
                outbox: format!("{prefix}outbox"),
                ensured: Mutex::default(),
            }),
        })
    }
}

impl Shared {
    fn create_table_sql(&self, table: &str) -> String {
        let d = self.dialect;
        format!(
            "CREATE TABLE IF NOT EXISTS {table} (id {}, doc {} NOT NULL)",
            d.id_column, d.doc_column
        )
    }

    fn select_doc_sql(&self, table: &str) -> String {
        format!(
            "SELECT {} FROM {table} WHERE id = $1",
            self.dialect.doc_select
        )
    }

    fn known(&self, table: &str) -> bool {
        lock(&self.ensured).contains(table)
    }

    async fn ensure_table(&self, table: &str) -> Result<(), StoreError> {
        if self.known(table) {
            return Ok(());
        }
        sqlx::query(&self.create_table_sql(table))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        lock(&self.ensured).insert(table.to_owned());
        Ok(())
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.dialect.begin {
            Some(sql) => self.pool.begin_with(sql).await.map_err(db),
            None => self.pool.begin().await.map_err(db),
        }
    }
}

fn parse_doc(table: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::database(format!("a document of {table} is not JSON"), e))
}

struct SqlTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    shared: Arc<Shared>,
    /// Tables this transaction created (known to exist once it commits).
    created: Vec<String>,
}

impl SqlTx {
    /// Creates the table inside the transaction if it may not exist (taking a pool
    /// connection here would wait for this transaction's own lock on SQLite).
    async fn ensure(&mut self, table: &str) -> Result<(), StoreError> {
        if self.shared.known(table) || self.created.iter().any(|t| t == table) {
            return Ok(());
        }
        sqlx::query(&self.shared.create_table_sql(table))
            .execute(&mut *self.tx)
            .await
            .map_err(db)?;
        self.created.push(table.to_owned());
        Ok(())
    }
}

impl DriverTx for SqlTx {
    fn insert<'a>(
        &'a mut self,
        table: &'a str,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            self.ensure(table).await?;
            let sql = format!(
                "INSERT INTO {table} (doc) VALUES ({}) RETURNING id",
                self.shared.dialect.doc_param
            );
            let (id,): (i64,) = sqlx::query_as(&sql)
                .bind(doc.to_string())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(db)?;
            Ok(id)
        })
    }

    fn update<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
        doc: &'a Value,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.ensure(table).await?;
            let sql = format!(
                "UPDATE {table} SET doc = {} WHERE id = $2",
                self.shared.dialect.doc_param
            );
            sqlx::query(&sql)
                .bind(doc.to_string())
                .bind(id)
                .execute(&mut *self.tx)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn delete<'a>(&'a mut self, table: &'a str, id: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.ensure(table).await?;
            sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
                .bind(id)
                .execute(&mut *self.tx)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn get<'a>(
        &'a mut self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(async move {
            self.ensure(table).await?;
            let row: Option<(String,)> = sqlx::query_as(&self.shared.select_doc_sql(table))
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(db)?;
            row.map(|(text,)| parse_doc(table, &text)).transpose()
        })
    }

    fn outbox_push<'a>(
        &'a mut self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let json = serde_json::to_string(envelope).map_err(|e| {
                StoreError::database(
                    format!("model event `{}` cannot be serialized", envelope.name),
                    e,
                )
            })?;
            let sql = format!(
                "INSERT INTO {} (event_id, name, envelope, created_at) VALUES ($1, $2, $3, $4)",
                self.shared.outbox
            );
            sqlx::query(&sql)
                .bind(envelope.id.to_string())
                .bind(envelope.name.to_string())
                .bind(json)
                .bind(now_ms())
                .execute(&mut *self.tx)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let SqlTx {
                tx,
                shared,
                created,
            } = *self;
            tx.commit().await.map_err(db)?;
            lock(&shared.ensured).extend(created);
            Ok(())
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.rollback().await.map_err(db) })
    }
}

struct SqlOutbox {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    rows: Vec<OutboxRow>,
    outbox: String,
}

impl OutboxBatch for SqlOutbox {
    fn rows(&self) -> &[OutboxRow] {
        &self.rows
    }

    fn mark<'a>(
        &'a mut self,
        seq: i64,
        error: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let sql = format!(
                "UPDATE {} SET sent_at = $1, error = $2 WHERE seq = $3",
                self.outbox
            );
            sqlx::query(&sql)
                .bind(now_ms())
                .bind(error.map(str::to_owned))
                .bind(seq)
                .execute(&mut *self.tx)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.commit().await.map_err(db) })
    }
}

impl StoreDriver for SqlDriver {
    fn name(&self) -> &'static str {
        self.shared.dialect.name
    }

    fn has_outbox(&self) -> bool {
        true
    }

    fn prepare<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} (seq {}, event_id TEXT NOT NULL UNIQUE, \
                 name TEXT NOT NULL, envelope TEXT NOT NULL, created_at {big} NOT NULL, \
                 sent_at {big}, error TEXT)",
                s.outbox,
                s.dialect.id_column,
                big = s.dialect.big
            );
            sqlx::query(&sql).execute(&s.pool).await.map_err(db)?;
            for t in tables {
                s.ensure_table(t).await?;
            }
            Ok(())
        })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn DriverTx>, StoreError>> {
        Box::pin(async move {
            let tx = self.shared.begin().await?;
            let tx: Box<dyn DriverTx> = Box::new(SqlTx {
                tx,
                shared: self.shared.clone(),
                created: Vec::new(),
            });
            Ok(tx)
        })
    }

    fn get<'a>(
        &'a self,
        table: &'a str,
        id: i64,
    ) -> BoxFuture<'a, Result<Option<Value>, StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.ensure_table(table).await?;
            let row: Option<(String,)> = sqlx::query_as(&s.select_doc_sql(table))
                .bind(id)
                .fetch_optional(&s.pool)
                .await
                .map_err(db)?;
            row.map(|(text,)| parse_doc(table, &text)).transpose()
        })
    }

    fn all<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Vec<(i64, Value)>, StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            s.ensure_table(table).await?;
            let sql = format!(
                "SELECT id, {} FROM {table} ORDER BY id",
                s.dialect.doc_select
            );
            let rows: Vec<(i64, String)> =
                sqlx::query_as(&sql).fetch_all(&s.pool).await.map_err(db)?;
            rows.into_iter()
                .map(|(id, text)| Ok((id, parse_doc(table, &text)?)))
                .collect()
        })
    }

    fn drop_tables<'a>(&'a self, tables: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut all: Vec<String> = lock(&s.ensured).iter().cloned().collect();
            all.extend(tables.iter().cloned());
            all.push(s.outbox.clone());
            all.sort();
            all.dedup();
            for t in all {
                sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
                    .execute(&s.pool)
                    .await
                    .map_err(db)?;
            }
            lock(&s.ensured).clear();
            Ok(())
        })
    }

    fn outbox_take(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<Box<dyn OutboxBatch>>, StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut tx = s.begin().await?;
            let sql = format!(
                "SELECT seq, envelope FROM {} WHERE sent_at IS NULL ORDER BY seq LIMIT {limit}{}",
                s.outbox, s.dialect.lock_rows
            );
            let rows: Vec<(i64, String)> =
                sqlx::query_as(&sql).fetch_all(&mut *tx).await.map_err(db)?;
            let batch: Box<dyn OutboxBatch> = Box::new(SqlOutbox {
                tx,
                rows: rows
                    .into_iter()
                    .map(|(seq, envelope)| OutboxRow { seq, envelope })
                    .collect(),
                outbox: s.outbox.clone(),
            });
            Ok(Some(batch))
        })
    }

    fn outbox_pending(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let s = &self.shared;
            let sql = format!("SELECT COUNT(*) FROM {} WHERE sent_at IS NULL", s.outbox);
            let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(&s.pool).await.map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}
