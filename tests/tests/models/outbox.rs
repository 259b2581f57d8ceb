//! The outbox: a model event committed by a process that died before publishing it is
//! published by the next store opened on the database, once.

use super::*;

const WORKER: &str = env!("CARGO_BIN_EXE_eventflow-test-worker");

/// A process commits a model and dies before publishing its event; the next store opened
/// on the database publishes it, once.
async fn crash_between_commit_and_publish(
    db: String,
    prefix: String,
    reopen: Kind,
    dir: Option<tempdir::Dir>,
) {
    let out = tokio::process::Command::new(WORKER)
        .args([&db, &prefix, "model-crash"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "the worker was to abort");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("committed 1"), "{stdout}");

    for restart in 0..2 {
        let (bus, seen) = bus_recording().await;
        let builder = Store::builder(&bus)
            .prefix(prefix.clone())
            .relay_interval(std::time::Duration::from_millis(50));
        let store = match (&reopen, &dir) {
            (Kind::Sqlite, Some(d)) => builder.sqlite(d.path.join("app.db")).await.unwrap(),
            _ => builder.postgres(&db).await.unwrap(),
        };
        if restart == 0 {
            assert_eq!(events(&seen, 1).await, ["member.created 1 "]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let expected = if restart == 0 { 1 } else { 0 };
        assert_eq!(seen.lock().unwrap().len(), expected, "restart {restart}");
        assert_eq!(store.outbox_pending().await.unwrap(), 0);
        assert_eq!(store.all::<Member>().await.unwrap().len(), 1);
        if restart == 1 {
            store.drop_tables().await.unwrap();
        }
        bus.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_outbox_survives_a_crash_after_commit() {
    let dir = tempdir::Dir::new("crash_sqlite");
    let db = format!("sqlite:{}", dir.path.join("app.db").display());
    crash_between_commit_and_publish(db, unique_prefix(), Kind::Sqlite, Some(dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_survives_a_crash_after_commit() {
    let Some(url) = postgres_or_skip("crash_postgres").await else {
        return;
    };
    crash_between_commit_and_publish(url, unique_prefix(), Kind::Postgres, None).await;
}
