//! SQLite and PostgreSQL drivers of the eventflow [`Store`]: each model type is a table
//! `<prefix>m_<name>` with an integer `id` the database assigns and the model as one JSON
//! document (`TEXT` on SQLite, `JSONB` on PostgreSQL), and model events go through the
//! `<prefix>outbox` table, written in the same transaction as the model.
//!
//! A document column keeps every model storable without migrations or a per-type schema
//! in the derive, and the same on every driver; PostgreSQL can still index fields of it
//! (`CREATE INDEX ... ((doc->>'email'))`). Tables are created when the store opens (for
//! registered models) or on first use.
//!
//! On PostgreSQL several processes may relay one database's outbox: rows are taken with
//! `FOR UPDATE SKIP LOCKED`. A database error keeps the driver's `sqlx::Error` as the
//! source of [`StoreError::Database`], so a unique-key violation can be told apart:
//!
//! ```no_run
//! # use eventflow_runtime::StoreError;
//! fn is_duplicate(e: &StoreError) -> bool {
//!     e.database_source::<sqlx::Error>()
//!         .and_then(|e| e.as_database_error())
//!         .is_some_and(|e| e.is_unique_violation())
//! }
//! ```
//!
//! | feature | driver | constructor |
//! | --- | --- | --- |
//! | `sqlite` (default) | a file | `Store::sqlite(path, &bus)`, `Store::builder(&bus).sqlite(path)` |
//! | `postgres` | a server | `Store::postgres(url, &bus)`, `Store::builder(&bus).postgres(url)` |
//!
//! The constructors come from [`SqlStoreExt`] and [`SqlStoreBuilderExt`] (both in
//! `eventflow::prelude`).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use std::future::Future;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use eventflow_runtime::{EventBus, StoreError};
use eventflow_runtime::{Store, StoreBuilder};

mod driver;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use driver::SqlDriver;

/// `Store::sqlite` and `Store::postgres`.
pub trait SqlStoreExt: Sized {
    /// A SQLite store in the file at `path` (created if missing, in WAL mode), publishing
    /// on `bus`. Needs the `sqlite` feature.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    fn sqlite(
        path: impl AsRef<std::path::Path>,
        bus: &EventBus,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send;
    /// A PostgreSQL store at `url` (`postgres://user@host/db`), publishing on `bus`. Needs the `postgres` feature.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    fn postgres(
        url: &str,
        bus: &EventBus,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send;
}

impl SqlStoreExt for Store {
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    fn sqlite(
        path: impl AsRef<std::path::Path>,
        bus: &EventBus,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send {
        let path = path.as_ref().to_path_buf();
        let builder = Store::builder(bus);
        async move { builder.sqlite(path).await }
    }

    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    fn postgres(
        url: &str,
        bus: &EventBus,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send {
        let url = url.to_owned();
        let builder = Store::builder(bus);
        async move { builder.postgres(&url).await }
    }
}

/// `Store::builder(&bus).sqlite(path)` and `.postgres(url)`.
pub trait SqlStoreBuilderExt: Sized {
    /// A SQLite store in the file at `path` (created if missing, in WAL mode). Needs the `sqlite` feature.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    fn sqlite(
        self,
        path: impl AsRef<std::path::Path>,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send;
    /// A PostgreSQL store at `url` (`postgres://user@host/db`). Needs the `postgres` feature.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    fn postgres(self, url: &str) -> impl Future<Output = Result<Store, StoreError>> + Send;
}

impl SqlStoreBuilderExt for StoreBuilder {
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    fn sqlite(
        self,
        path: impl AsRef<std::path::Path>,
    ) -> impl Future<Output = Result<Store, StoreError>> + Send {
        let path = path.as_ref().display().to_string();
        async move {
            let driver = SqlDriver::sqlite(&path, self.table_prefix()).await?;
            self.driver(driver).await
        }
    }

    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    fn postgres(self, url: &str) -> impl Future<Output = Result<Store, StoreError>> + Send {
        let url = url.to_owned();
        async move {
            let driver = SqlDriver::postgres(&url, self.table_prefix()).await?;
            self.driver(driver).await
        }
    }
}
