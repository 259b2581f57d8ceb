//! Database errors keep the driver's error: a unique-key violation can be told apart from
//! other failures, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)] // test code

use eventflow::prelude::*;
use eventflow_tests::members::Member;
use eventflow_tests::{postgres_or_skip, unique_prefix};
use sqlx::Executor;

fn is_unique_violation(e: &StoreError) -> bool {
    e.database_source::<sqlx::Error>()
        .and_then(|e| e.as_database_error())
        .is_some_and(|e| e.is_unique_violation())
}

async fn bus() -> EventBus {
    EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .build()
        .await
        .unwrap()
}

/// Creates one member, adds a unique index on the email with `index_sql`, and checks that
/// a second member with the same email fails as a unique violation, writing nothing.
async fn second_member_with_same_email_is_a_unique_violation(store: &Store) {
    let first = store
        .create(Member::new("ada", "ada@example.com"))
        .await
        .unwrap();
    assert!(first.id.is_some());
    let err = store
        .create(Member::new("ada2", "ada@example.com"))
        .await
        .expect_err("the unique index refuses the second member");
    assert!(
        matches!(err, StoreError::Database { .. }),
        "a database error: {err:?}"
    );
    assert!(
        is_unique_violation(&err),
        "told apart as a unique violation: {err:?}"
    );
    assert!(err.to_string().contains("database error"), "{err}");
    assert_eq!(store.all::<Member>().await.unwrap().len(), 1);
    // Another kind of database failure is not taken for one.
    assert!(!is_unique_violation(&StoreError::database_msg("gone")));
}

#[tokio::test]
async fn sqlite_unique_violation_is_told_apart() {
    let bus = bus().await;
    let dir = std::env::temp_dir().join(format!(
        "eventflow-unique-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.db");
    let prefix = unique_prefix();
    let store = Store::builder(&bus)
        .prefix(&prefix)
        .sqlite(&path)
        .await
        .unwrap();
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    pool.execute(
        format!(
            "CREATE UNIQUE INDEX {prefix}email ON {prefix}m_member (json_extract(doc, '$.email'))"
        )
        .as_str(),
    )
    .await
    .unwrap();
    pool.close().await;
    second_member_with_same_email_is_a_unique_violation(&store).await;
    store.drop_tables().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_unique_violation_is_told_apart() {
    let Some(url) = postgres_or_skip("postgres_unique_violation_is_told_apart").await else {
        return;
    };
    let bus = bus().await;
    let prefix = unique_prefix();
    let store = Store::builder(&bus)
        .prefix(&prefix)
        .postgres(&url)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    pool.execute(
        format!("CREATE UNIQUE INDEX {prefix}email ON {prefix}m_member ((doc->>'email'))").as_str(),
    )
    .await
    .unwrap();
    second_member_with_same_email_is_a_unique_violation(&store).await;
    store.drop_tables().await.unwrap();
    pool.close().await;
}
