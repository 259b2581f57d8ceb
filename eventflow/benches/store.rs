//! Creating one model on SQLite with two hooks and one model event (through the outbox and
//! its relay, to a handler) against the same insert written with sqlx alone, in the same
//! run.

#[path = "../../eventflow-runtime/benches/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use eventflow::prelude::*;

#[derive(Model, Clone, Debug, Serialize, Deserialize)]
#[model(name = "bench_user")]
struct BenchUser {
    #[model(id)]
    id: Option<i64>,
    username: String,
    email: String,
    created_at: Option<u64>,
}

static INDEXED: AtomicU64 = AtomicU64::new(0);
static WELCOMED: AtomicU64 = AtomicU64::new(0);

#[hooks]
impl BenchUser {
    #[before_create]
    fn stamp(&mut self) {
        self.created_at = Some(1_700_000_000);
    }

    #[after_write]
    async fn reindex(&self) {
        INDEXED.fetch_add(1, Ordering::Relaxed);
    }
}

#[event_handler("bench_user.created")]
async fn welcome(event: ModelEvent<BenchUser>) {
    if event.model.email.contains('@') {
        WELCOMED.fetch_add(1, Ordering::Relaxed);
    }
}

fn user() -> BenchUser {
    BenchUser {
        id: None,
        username: "ada".into(),
        email: "ada@example.com".into(),
        created_at: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("eventflow-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (store, raw) = rt.block_on(async {
        let bus = EventBus::builder().build().await.expect("bus");
        let store = Store::sqlite(dir.join("eventflow.db"), &bus)
            .await
            .expect("store");
        let raw = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect(&format!("sqlite://{}?mode=rwc", dir.join("raw.db").display()))
            .await
            .expect("raw pool");
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&raw)
            .await
            .expect("wal");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL)",
        )
        .execute(&raw)
        .await
        .expect("table");
        (store, raw)
    });

    let mut g = c.benchmark_group("sqlite_create");
    g.bench_function("raw_sqlx_insert", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let raw = raw.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut u = user();
                    u.created_at = Some(1_700_000_000);
                    let doc = serde_json::to_string(&u).expect("json");
                    let (id,): (i64,) =
                        sqlx::query_as("INSERT INTO users (doc) VALUES (?) RETURNING id")
                            .bind(doc)
                            .fetch_one(&raw)
                            .await
                            .expect("insert");
                    u.id = Some(id);
                    std::hint::black_box(u);
                }
                support::record("raw_sqlx_insert", iters, start.elapsed())
            }
        })
    });
    g.bench_function("eventflow_create", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let u = store.create(user()).await.expect("create");
                    std::hint::black_box(u);
                }
                // The relay's publishing belongs to the cost: wait until it has caught up.
                while store.outbox_pending().await.expect("pending") > 0 {
                    tokio::task::yield_now().await;
                }
                support::record("eventflow_create", iters, start.elapsed())
            }
        })
    });
    g.finish();
    support::report_ratio(
        "create with 2 hooks + 1 model event vs raw insert (SQLite)",
        "eventflow_create",
        "raw_sqlx_insert",
    );
    rt.block_on(async {
        let _ = store.drop_tables().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "hooks ran {} times, handler {} times",
        INDEXED.load(Ordering::Relaxed),
        WELCOMED.load(Ordering::Relaxed)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
