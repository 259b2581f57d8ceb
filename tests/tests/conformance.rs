//! The Redis backend and the SQLite and PostgreSQL store drivers pass the conformance
//! suites of `eventflow::testing`. (The memory backend and driver run them in
//! `eventflow-runtime/tests/conformance.rs`.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use eventflow::prelude::*;
use eventflow::redis::RedisConfig;
use eventflow::testing::{BackendFactory, StoreFactory};
use eventflow::{BoxFuture, EventBusBuilder, StoreBuilder};
use eventflow_tests::{RedisTest, postgres_or_skip, redis_or_skip};

/// Redis, one queue per namespace, with a short claim time so that a stopped worker's
/// entries are claimed within the test.
#[derive(Default)]
struct Redis {
    tests: Mutex<HashMap<String, RedisTest>>,
}

impl BackendFactory for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn attach<'a>(
        &'a self,
        builder: EventBusBuilder,
        ns: &'a str,
    ) -> BoxFuture<'a, Option<EventBusBuilder>> {
        Box::pin(async move {
            let url = {
                let tests = self.tests.lock().unwrap_or_else(|p| p.into_inner());
                tests.get(ns).map(|t| t.url.clone())
            };
            let url = match url {
                Some(url) => url,
                None => {
                    let mut t = redis_or_skip("redis conformance suite").await?;
                    t.queue = ns.to_owned();
                    let url = t.url.clone();
                    let mut tests = self.tests.lock().unwrap_or_else(|p| p.into_inner());
                    tests.insert(ns.to_owned(), t);
                    url
                }
            };
            let mut cfg = RedisConfig::new(url);
            cfg.queue = ns.to_owned();
            cfg.claim_idle = Duration::from_millis(1500);
            cfg.block = Duration::from_millis(100);
            cfg.promote_interval = Duration::from_millis(20);
            Some(builder.redis_config(cfg))
        })
    }

    fn shares_queue(&self) -> bool {
        true
    }

    fn inject_invalid<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Some(url) = self
                .tests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(ns)
                .map(|t| t.url.clone())
            else {
                return false;
            };
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return false;
            };
            let Ok(mut c) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            redis::cmd("XADD")
                .arg(format!("{ns}:stream"))
                .arg("*")
                .arg("envelope")
                .arg("{ this is not an envelope")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        })
    }

    fn cleanup<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, ()> {
        // Dropping the RedisTest deletes the namespace's keys.
        let t = self
            .tests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ns);
        Box::pin(async move { drop(t) })
    }
}

mod redis_backend {
    use std::sync::LazyLock;
    static REDIS: LazyLock<super::Redis> = LazyLock::new(super::Redis::default);
    eventflow::backend_suite!(*REDIS);
}

/// SQLite, one database file per store, removed when the test closes it.
#[derive(Default)]
struct Sqlite {
    files: Mutex<HashMap<String, std::path::PathBuf>>,
}

impl StoreFactory for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn open<'a>(&'a self, builder: StoreBuilder) -> BoxFuture<'a, Option<Store>> {
        Box::pin(async move {
            let path = std::env::temp_dir().join(format!(
                "eventflow-suite-{}.db",
                uuid::Uuid::new_v4().simple()
            ));
            let store = builder.sqlite(&path).await.expect("a SQLite store");
            self.files
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(store.prefix().to_owned(), path);
            Some(store)
        })
    }

    fn close<'a>(&'a self, store: Store) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = store.drop_tables().await;
            let path = self
                .files
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(store.prefix());
            drop(store);
            if let Some(path) = path {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
        })
    }
}

/// PostgreSQL, one table prefix per store.
struct Postgres;

impl StoreFactory for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn open<'a>(&'a self, builder: StoreBuilder) -> BoxFuture<'a, Option<Store>> {
        Box::pin(async move {
            let url = postgres_or_skip("postgres conformance suite").await?;
            Some(builder.postgres(&url).await.expect("a PostgreSQL store"))
        })
    }
}

mod sqlite_store {
    use std::sync::LazyLock;
    static SQLITE: LazyLock<super::Sqlite> = LazyLock::new(super::Sqlite::default);
    eventflow::store_suite!(*SQLITE);
}

mod postgres_store {
    eventflow::store_suite!(super::Postgres);
}
