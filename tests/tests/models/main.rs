//! Models, hooks, model events and transactions on the three stores: memory, SQLite (a
//! file) and PostgreSQL. Each test runs the same checks on each store.
#![allow(clippy::unwrap_used)] // test code

use std::sync::{Arc, Mutex};

use eventflow::ModelEventKind;
use eventflow::prelude::*;
use eventflow_tests::members::{Member, hook_log};
use eventflow_tests::{postgres_or_skip, unique_prefix, wait_until};

mod context;
mod outbox;

/// The model events a bus received, as `name id changed`.
type Seen = Arc<Mutex<Vec<String>>>;

async fn bus_recording() -> (EventBus, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::typed(
            "member-events",
            "member.*",
            move |event: ModelEvent<Member>, ctx| {
                let s = s.clone();
                async move {
                    assert_eq!(ctx.envelope().name.as_str(), event.name());
                    s.lock().unwrap().push(format!(
                        "{} {} {}",
                        event.name(),
                        event.model.id.unwrap_or(-1),
                        event.changed.join(",")
                    ));
                    Ok::<(), HandlerError>(())
                }
            },
        ))
        .build()
        .await
        .unwrap();
    (bus, seen)
}

enum Kind {
    Memory,
    Sqlite,
    Postgres,
}

/// A store of this kind with a fresh prefix, or `None` when PostgreSQL is skipped.
async fn open(kind: &Kind, bus: &EventBus, test: &str) -> Option<(Store, Option<tempdir::Dir>)> {
    let prefix = unique_prefix();
    let builder = Store::builder(bus)
        .prefix(prefix)
        .relay_interval(std::time::Duration::from_millis(50));
    Some(match kind {
        Kind::Memory => (builder.memory(), None),
        Kind::Sqlite => {
            let dir = tempdir::Dir::new(test);
            let store = builder.sqlite(dir.path.join("app.db")).await.unwrap();
            (store, Some(dir))
        }
        Kind::Postgres => {
            let url = postgres_or_skip(test).await?;
            (builder.postgres(&url).await.unwrap(), None)
        }
    })
}

mod tempdir {
    /// A directory removed when dropped.
    pub(crate) struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub(crate) fn new(test: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "eventflow-{test}-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The first `n` model events, sorted: the bus runs deliveries of separate events
/// concurrently, so they may be handled in any order.
async fn events(seen: &Seen, n: usize) -> Vec<String> {
    wait_until(&format!("{n} model event(s)"), || {
        seen.lock().unwrap().len() >= n
    })
    .await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    got
}

/// Each test body runs once per store kind.
macro_rules! on_every_store {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                run(Kind::Memory, concat!(stringify!($name), "_memory")).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(Kind::Sqlite, concat!(stringify!($name), "_sqlite")).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run(Kind::Postgres, concat!(stringify!($name), "_postgres")).await
            }
            async fn run(kind: Kind, test: &str) {
                let (bus, seen) = bus_recording().await;
                let Some((store, _dir)) = open(&kind, &bus, test).await else {
                    return;
                };
                $body(&store, &seen).await;
                store.drop_tables().await.unwrap();
                bus.shutdown().await.unwrap();
            }
        }
    };
}

async fn hooks_run_in_order_around_each_write(store: &Store, seen: &Seen) {
    let p = store.prefix().to_owned();
    let m = store
        .create(Member::new("ada", "Ada@Example.com"))
        .await
        .unwrap();
    assert_eq!(m.id, Some(1));
    assert_eq!(
        m.created_at,
        Some(1_700_000_000),
        "before_create changed the model"
    );
    assert_eq!(
        m.email, "ada@example.com",
        "the free-function hook changed the model"
    );
    assert_eq!(
        hook_log(&p),
        [
            "before_write",
            "before_create",
            "audit",
            "normalize_email",
            "after_create",
            "after_write"
        ]
    );
    let stored = store.get::<Member>(1).await.unwrap().unwrap();
    assert_eq!(stored, m, "what hooks changed is what is stored");

    let mut changed = m.clone();
    changed.email = "ada@lovelace.org".into();
    let updated = store.update(&changed).await.unwrap();
    assert_eq!(updated.email, "ada@lovelace.org");
    assert_eq!(
        hook_log(&p),
        [
            "before_write",
            "before_update",
            "after_update",
            "after_write"
        ]
    );

    store.delete(&updated).await.unwrap();
    assert_eq!(hook_log(&p), ["before_delete", "after_delete"]);
    assert!(store.get::<Member>(1).await.unwrap().is_none());

    let got = events(seen, 3).await;
    assert_eq!(
        got,
        [
            "member.created 1 ",
            "member.deleted 1 ",
            "member.updated 1 email"
        ]
    );
    let stats = store.stats();
    assert_eq!(
        (
            stats.commits,
            stats.rollbacks,
            stats.after_hook_errors,
            stats.events_published,
            stats.events_unhandled,
            stats.events_set_aside,
        ),
        (3, 0, 0, 3, 0, 0),
        "{stats:?}"
    );
}
on_every_store!(hooks_in_order, hooks_run_in_order_around_each_write);

async fn a_before_hook_vetoes_everything(store: &Store, seen: &Seen) {
    let p = store.prefix().to_owned();
    let err = store
        .create(Member::new("", "nobody@example.com"))
        .await
        .unwrap_err();
    let StoreError::Vetoed {
        hook,
        message,
        deliberate,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(hook, "Member::stamp");
    assert_eq!(message, "username is required");
    assert!(*deliberate);
    assert!(err.to_string().contains("Member::stamp"), "{err}");
    assert_eq!(
        hook_log(&p),
        ["before_write", "before_create"],
        "no after-hook ran"
    );
    assert!(
        store.all::<Member>().await.unwrap().is_empty(),
        "nothing was written"
    );

    let mut busy = store
        .create(Member::new("bob", "bob@example.com"))
        .await
        .unwrap();
    busy.active_orders = 2;
    let busy = store.update(&busy).await.unwrap();
    hook_log(&p);
    let err = store.delete(&busy).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Vetoed { hook, .. } if hook == "Member::guard"),
        "{err}"
    );
    assert_eq!(hook_log(&p), ["before_delete"]);
    assert!(
        store
            .get::<Member>(busy.id.unwrap())
            .await
            .unwrap()
            .is_some()
    );

    // Only the create and the update published; the vetoed writes did not.
    let got = events(seen, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(seen.lock().unwrap().len(), 2, "{got:?}");
    assert_eq!(store.outbox_pending().await.unwrap(), 0);
    assert_eq!(store.stats().rollbacks, 2);
}
on_every_store!(vetoes, a_before_hook_vetoes_everything);

async fn an_after_hook_error_keeps_the_committed_write(store: &Store, seen: &Seen) {
    let m = store
        .create(Member::new("after-fails", "x@example.com"))
        .await
        .unwrap();
    assert!(store.get::<Member>(m.id.unwrap()).await.unwrap().is_some());
    assert_eq!(store.stats().after_hook_errors, 1);
    assert_eq!(
        events(seen, 1).await,
        [format!("member.created {} ", m.id.unwrap())]
    );
}
on_every_store!(
    after_hook_errors,
    an_after_hook_error_keeps_the_committed_write
);

async fn bulk_writes_fire_hooks_in_one_transaction(store: &Store, seen: &Seen) {
    let p = store.prefix().to_owned();
    let made = store
        .create_many(vec![
            Member::new("a", "A@x.org"),
            Member::new("b", "B@x.org"),
            Member::new("c", "C@x.org"),
        ])
        .await
        .unwrap();
    assert_eq!(
        made.iter().map(|m| m.id.unwrap()).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        made.iter()
            .all(|m| m.email.ends_with("@x.org") && m.email.starts_with(char::is_lowercase))
    );
    assert_eq!(
        hook_log(&p).iter().filter(|h| *h == "after_create").count(),
        3
    );

    // One veto and none of them is written.
    let err = store
        .create_many(vec![
            Member::new("d", "d@x.org"),
            Member::new("", "e@x.org"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Vetoed { .. }), "{err}");
    assert_eq!(store.all::<Member>().await.unwrap().len(), 3);
    assert!(
        !hook_log(&p).iter().any(|h| h.starts_with("after")),
        "no after-hook ran"
    );

    let renamed: Vec<Member> = made
        .iter()
        .map(|m| Member {
            username: format!("{}2", m.username),
            ..m.clone()
        })
        .collect();
    store.update_many(&renamed).await.unwrap();
    store.delete_many(&renamed[..2]).await.unwrap();
    let left = store.all::<Member>().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].username, "c2");
    let got = events(seen, 8).await;
    assert_eq!(
        got.iter()
            .filter(|e| e.starts_with("member.created"))
            .count(),
        3
    );
    assert_eq!(got.iter().filter(|e| e.ends_with("username")).count(), 3);
    assert_eq!(
        got.iter()
            .filter(|e| e.starts_with("member.deleted"))
            .count(),
        2
    );
}
on_every_store!(bulk, bulk_writes_fire_hooks_in_one_transaction);

async fn a_transaction_rolls_every_write_back(store: &Store, seen: &Seen) {
    let p = store.prefix().to_owned();
    let kept = store.create(Member::new("kept", "k@x.org")).await.unwrap();
    events(seen, 1).await;
    hook_log(&p);

    let result = store
        .transaction(|tx| {
            let kept = kept.clone();
            async move {
                tx.create(Member::new("one", "1@x.org")).await?;
                tx.update(&Member {
                    username: "changed".into(),
                    ..kept
                })
                .await?;
                Err::<(), _>(StoreError::abort("payment declined"))
            }
        })
        .await;
    assert!(matches!(result, Err(StoreError::Aborted(_))), "{result:?}");
    let all = store.all::<Member>().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].username, "kept", "the update was rolled back");
    assert!(!hook_log(&p).iter().any(|h| h.starts_with("after")));

    let (a, b) = store
        .transaction(|tx| async move {
            let a = tx.create(Member::new("two", "2@x.org")).await?;
            let b = tx.create(Member::new("three", "3@x.org")).await?;
            Ok((a, b))
        })
        .await
        .unwrap();
    assert_eq!(store.all::<Member>().await.unwrap().len(), 3);
    let got = events(seen, 3).await;
    let mut expected = vec![
        format!("member.created {} ", kept.id.unwrap()),
        format!("member.created {} ", a.id.unwrap()),
        format!("member.created {} ", b.id.unwrap()),
    ];
    expected.sort();
    assert_eq!(got, expected);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the rolled-back writes published nothing"
    );
}
on_every_store!(transactions, a_transaction_rolls_every_write_back);

async fn missing_ids_and_rows_are_clear_errors(store: &Store, _seen: &Seen) {
    let err = store
        .update(&Member::new("x", "x@x.org"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoId { .. }), "{err}");
    let ghost = Member {
        id: Some(999),
        ..Member::new("ghost", "g@x.org")
    };
    let err = store.update(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { id: 999, .. }), "{err}");
    let err = store.delete(&ghost).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { id: 999, .. }), "{err}");
}
on_every_store!(errors, missing_ids_and_rows_are_clear_errors);

#[test]
fn model_events_are_typed_for_registered_handlers() {
    assert_eq!(ModelEventKind::Created.as_str(), "created");
    assert_eq!(<Member as eventflow::Model>::NAME, "member");
}
