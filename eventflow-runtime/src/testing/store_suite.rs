//! The conformance suite every store driver runs: [`store_suite!`](crate::store_suite)
//! expands to one test per function of this module, each on tables of its own prefix.
//!
//! A driver package implements [`StoreFactory`] for a value that opens a store on its
//! driver from a builder (which carries the bus and a unique table prefix), and invokes
//! the macro in a test file:
//!
//! ```ignore
//! struct Memory;
//! impl eventflow::testing::StoreFactory for Memory {
//!     fn name(&self) -> &'static str {"memory" }
//!     fn open<'a>(&'a self, b: StoreBuilder) -> BoxFuture<'a, Option<Store>> {
//!         Box::pin(async move {Some(b.memory()) })
//!     }
//! }
//! eventflow::store_suite!(Memory);
//! ```
//!
//! The suite's model is [`SuiteNote`] (`suite_note`); a `before_create` hook of the suite
//! vetoes a note whose text is `veto`.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::bus::{EventBus, Handler, Recorder};
use crate::error::HandlerError;
use crate::model::{HookError, HookKind, Model, ModelEvent};
use crate::source::SourceLocation;
use crate::store::{HookContext, HookInvoke, HookRecord, Store, StoreBuilder, StoreError};
use crate::util::{BoxFuture, lock};

/// A store driver under test. See the [module documentation](self).
pub trait StoreFactory: Send + Sync + 'static {
    /// A short name, for messages.
    fn name(&self) -> &'static str;
    /// Opens a store on the driver from `builder` (it carries the bus and a table prefix
    /// no other test uses). `None` skips the test: the database cannot be reached (say
    /// so loudly; a factory that must not skip panics instead).
    fn open<'a>(&'a self, builder: StoreBuilder) -> BoxFuture<'a, Option<Store>>;
    /// Removes what a test left (called once per opened store, at its end). The default
    /// drops the store's tables; a driver whose store is a file also removes the file.
    fn close<'a>(&'a self, store: Store) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = store.drop_tables().await {
                eprintln!("could not drop the suite's tables: {e}");
            }
        })
    }
}

/// The model of the suite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteNote {
    /// Assigned by the store.
    pub id: Option<i64>,
    /// The note; `veto` is refused by the suite's `before_create` hook.
    pub text: String,
}

impl Model for SuiteNote {
    const NAME: &'static str = "suite_note";
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_id(&mut self, id: i64) {
        self.id = Some(id);
    }
}

fn note(text: &str) -> SuiteNote {
    SuiteNote {
        id: None,
        text: text.to_owned(),
    }
}

fn refuse_veto<'a>(
    model: &'a (dyn Any + Send + Sync),
    _ctx: &'a HookContext,
) -> BoxFuture<'a, Result<(), HookError>> {
    let refused = model
        .downcast_ref::<SuiteNote>()
        .is_some_and(|n| n.text == "veto");
    Box::pin(async move {
        if refused {
            Err(HookError::veto("the suite refuses `veto`"))
        } else {
            Ok(())
        }
    })
}

inventory::submit! {
    HookRecord {
        name: "eventflow::testing::store_suite::refuse_veto",
        model: TypeId::of::<SuiteNote>,
        model_name: "suite_note",
        kind: HookKind::BeforeCreate,
        position: None,
        invoke: HookInvoke::Ref(refuse_veto),
        location: SourceLocation::new(module_path!(), file!(), line!()),
    }
}

type Seen = Arc<Mutex<Vec<String>>>;

/// A bus recording the suite's model events as `name id changed` as they are handled (in
/// any order: the memory bus handles each event on a task of its own) and, in its
/// recorder, as they are published (in order), and a store on it.
async fn open<F: StoreFactory>(f: &F) -> Option<(Store, Seen, Recorder)> {
    open_handling(f, "suite_note.*").await
}

/// [`open`], with the bus's one handler for the model events matching `pattern`.
async fn open_handling<F: StoreFactory>(
    f: &F,
    pattern: &'static str,
) -> Option<(Store, Seen, Recorder)> {
    let seen: Seen = Arc::default();
    let recorder = Recorder::new();
    let s = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .schedules(false)
        .recorder(&recorder)
        .handler(Handler::typed(
            "suite-note-events",
            pattern,
            move |e: ModelEvent<SuiteNote>, _ctx| {
                lock(&s).push(format!(
                    "{} {} {}",
                    e.name(),
                    e.model.id.unwrap_or(-1),
                    e.changed.join(",")
                ));
                async { Ok::<(), HandlerError>(()) }
            },
        ))
        .build()
        .await
        .unwrap_or_else(|e| panic!("the suite's bus does not build: {e}"));
    let prefix = format!("efs{}_", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let builder = Store::builder(&bus)
        .prefix(prefix)
        .relay_interval(Duration::from_millis(50));
    match f.open(builder).await {
        Some(store) => Some((store, seen, recorder)),
        None => {
            eprintln!(
                "SKIPPED: the {} store cannot be reached; its conformance test did not run",
                f.name()
            );
            None
        }
    }
}

/// The events seen a while after writes that must publish none.
async fn none_after(seen: &Seen) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    lock(seen).clone()
}

/// The outbox's unsent rows once they are all sent, or after 10 s. (The relay marks its
/// rows sent when its batch commits, which may come a moment after the handler saw the
/// events.)
async fn outbox_drained(store: &Store) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pending = store.outbox_pending().await.expect("outbox");
    while pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = store.outbox_pending().await.expect("outbox");
    }
    pending
}

async fn wait_for(seen: &Seen, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && lock(seen).len() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Long enough for a duplicate to show.
    tokio::time::sleep(Duration::from_millis(150)).await;
    lock(seen).clone()
}

/// Creates, reads, updates and deletes, with ids assigned by the store.
pub async fn writes_round_trip<F: StoreFactory>(f: &F) {
    let Some((store, _, _)) = open(f).await else {
        return;
    };
    let a = store.create(note("a")).await.expect("create a");
    let b = store.create(note("b")).await.expect("create b");
    let got = store
        .get::<SuiteNote>(a.id.unwrap_or(-1))
        .await
        .expect("get");
    let mut changed = b.clone();
    changed.text = "b2".into();
    let updated = store.update(&changed).await.expect("update");
    let missing = store
        .update(&SuiteNote {
            id: Some(1_000_000),
            text: "x".into(),
        })
        .await;
    store.delete(&a).await.expect("delete");
    let all = store.all::<SuiteNote>().await.expect("all");
    let gone = store
        .get::<SuiteNote>(a.id.unwrap_or(-1))
        .await
        .expect("get");
    f.close(store.clone()).await;
    assert!(
        a.id.is_some() && b.id.is_some() && a.id != b.id,
        "{}: ids",
        f.name()
    );
    assert_eq!(got, Some(a.clone()), "{}: read back", f.name());
    assert_eq!(updated.text, "b2", "{}: update", f.name());
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{}: updating a missing model: {missing:?}",
        f.name()
    );
    assert_eq!(all, vec![updated], "{}: what is left", f.name());
    assert_eq!(gone, None, "{}: deleted", f.name());
}

/// A transaction whose closure fails writes nothing.
pub async fn a_transaction_rolls_back_every_write<F: StoreFactory>(f: &F) {
    let Some((store, seen, _)) = open(f).await else {
        return;
    };
    let result = store
        .transaction(|tx| async move {
            tx.create(note("one")).await?;
            tx.create(note("two")).await?;
            Err::<(), _>(StoreError::abort("changed my mind"))
        })
        .await;
    let all = store.all::<SuiteNote>().await.expect("all");
    let stats = store.stats();
    let events = none_after(&seen).await;
    f.close(store.clone()).await;
    assert!(
        matches!(result, Err(StoreError::Aborted(_))),
        "{}: {result:?}",
        f.name()
    );
    assert!(
        all.is_empty(),
        "{}: rolled back writes are visible",
        f.name()
    );
    assert_eq!(
        (stats.commits, stats.rollbacks),
        (0, 1),
        "{}: {stats:?}",
        f.name()
    );
    assert!(
        events.is_empty(),
        "{}: events of a rollback: {events:?}",
        f.name()
    );
}

/// A before-hook's veto writes nothing and publishes nothing.
pub async fn a_veto_writes_and_publishes_nothing<F: StoreFactory>(f: &F) {
    let Some((store, seen, _)) = open(f).await else {
        return;
    };
    let vetoed = store.create(note("veto")).await;
    let all = store.all::<SuiteNote>().await.expect("all");
    let events = none_after(&seen).await;
    f.close(store.clone()).await;
    assert!(
        matches!(
            vetoed,
            Err(StoreError::Vetoed {
                deliberate: true,
                ..
            })
        ),
        "{}: {vetoed:?}",
        f.name()
    );
    assert!(all.is_empty(), "{}: a vetoed model was written", f.name());
    assert!(
        events.is_empty(),
        "{}: a vetoed write published {events:?}",
        f.name()
    );
}

/// Model events are published after each commit, once each, in order, naming the
/// changed fields of an update.
pub async fn model_events_follow_the_commit_in_order<F: StoreFactory>(f: &F) {
    let Some((store, seen, recorder)) = open(f).await else {
        return;
    };
    let mut n = store.create(note("first")).await.expect("create");
    n.text = "second".into();
    let n = store.update(&n).await.expect("update");
    store.delete(&n).await.expect("delete");
    let id = n.id.unwrap_or(-1);
    let mut events = wait_for(&seen, 3).await;
    let published = recorder.published_names();
    let pending = outbox_drained(&store).await;
    let stats = store.stats();
    f.close(store.clone()).await;
    assert_eq!(
        published,
        [
            "suite_note.created",
            "suite_note.updated",
            "suite_note.deleted"
        ],
        "{}: published in the order of the commits",
        f.name()
    );
    events.sort();
    assert_eq!(
        events,
        [
            format!("suite_note.created {id} "),
            format!("suite_note.deleted {id} "),
            format!("suite_note.updated {id} text"),
        ],
        "{}",
        f.name()
    );
    assert_eq!(pending, 0, "{}: events left in the outbox", f.name());
    assert_eq!(stats.events_published, 3, "{}: {stats:?}", f.name());
}

/// A model event that no handler matches (on a bus that does not allow that) is skipped
/// and counted; the events after it are published, and none is left behind.
pub async fn a_model_event_nobody_handles_does_not_block_the_others<F: StoreFactory>(f: &F) {
    let Some((store, seen, _)) = open_handling(f, "suite_note.created").await else {
        return;
    };
    let first = store.create(note("first")).await.expect("create");
    store.delete(&first).await.expect("delete");
    let second = store.create(note("second")).await.expect("create");
    let mut events = wait_for(&seen, 2).await;
    let pending = outbox_drained(&store).await;
    let stats = store.stats();
    f.close(store.clone()).await;
    events.sort();
    let (a, b) = (first.id.unwrap_or(-1), second.id.unwrap_or(-1));
    assert_eq!(
        events,
        [
            format!("suite_note.created {a} "),
            format!("suite_note.created {b} "),
        ],
        "{}: the event after the unhandled one was not published",
        f.name()
    );
    assert_eq!(pending, 0, "{}: events left in the outbox", f.name());
    assert_eq!(stats.events_published, 2, "{}: {stats:?}", f.name());
    assert_eq!(stats.events_unhandled, 1, "{}: {stats:?}", f.name());
}
