//! Faults of the in-process bus found by trying to break it, each kept fixed by a test.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::time::Duration;

use eventflow::{
    BoxFuture, ConnectionError, DeadLetter, DeadLetterStore, EventBus, EventError, Handler,
    HandlerError, MemoryBackend, MemoryDeadLetters, OutcomeStatus, PublishError, RetryPolicy,
    WhenFull,
};

/// A dead-letter store that refuses every write, as a full or unreachable one does.
struct Refusing;

impl DeadLetterStore for Refusing {
    fn put(&self, _letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async {
            Err(ConnectionError {
                backend: "test",
                message: "the store is full".into(),
                source: None,
            })
        })
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn take(&self, _id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        Box::pin(async { Ok(None) })
    }
    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>> {
        Box::pin(async { Ok(0) })
    }
}

/// In process, a dead letter that cannot be stored is reported in the delivery's report,
/// and counted apart from the events that were dead-lettered.
#[tokio::test]
async fn a_dead_letter_that_cannot_be_stored_is_reported() {
    let bus = EventBus::builder()
        .without_registry()
        .backend(MemoryBackend::new().with_dead_letters(Arc::new(Refusing)))
        .handler(Handler::new("fails", "job.run", |_e, _ctx| async {
            Err::<(), _>(HandlerError::permanent_msg("no"))
        }))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("job.run", serde_json::json!({}))
        .await
        .unwrap();
    match &report.outcomes[0].status {
        OutcomeStatus::DeadLetterNotStored { error, store_error } => {
            assert_eq!(error.to_string(), "no");
            assert!(store_error.contains("the store is full"), "{store_error}");
        }
        other => panic!("expected DeadLetterNotStored, got {other:?}"),
    }
    let m = bus.metrics().handler("fails").unwrap().clone();
    assert_eq!((m.dead_lettered, m.dead_letter_failures), (0, 1), "{m:?}");
    bus.shutdown().await.unwrap();
}

/// A handler that waits for `gate` before it returns.
fn gated(name: &str, pattern: &str, gate: &Arc<tokio::sync::Semaphore>) -> Handler {
    let gate = gate.clone();
    Handler::new(name, pattern, move |_e, _ctx| {
        let gate = gate.clone();
        async move {
            let _pass = gate.acquire().await;
            Ok::<(), HandlerError>(())
        }
    })
}

async fn memory_bus(backend: MemoryBackend, handler: Handler) -> EventBus {
    EventBus::builder()
        .without_registry()
        .backend(backend)
        .handler(handler)
        .build()
        .await
        .unwrap()
}

/// A memory bus holds at most `max_waiting` events; past it publish refuses (or waits for
/// room, up to its timeout), and takes events again once handlers catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bus_holds_at_most_max_waiting_events() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let bus = memory_bus(
        MemoryBackend::new()
            .max_waiting(10)
            .when_full(WhenFull::Refuse),
        gated("slow", "slow.job", &gate),
    )
    .await;
    for _ in 0..10 {
        bus.publish_raw("slow.job", serde_json::json!({}))
            .await
            .unwrap();
    }
    let err = bus
        .publish_raw("slow.job", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventError::Publish(PublishError::Full {
                max_waiting: 10,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(bus.health().await.pending, Some(10));
    gate.add_permits(1000);
    eventflow_tests::wait_until("the ten handled", || {
        bus.metrics()
            .handler("slow")
            .is_some_and(|m| m.succeeded == 10)
    })
    .await;
    bus.publish_raw("slow.job", serde_json::json!({}))
        .await
        .unwrap();
    bus.shutdown().await.unwrap();

    // Waiting: publish blocks until room comes, or fails after its timeout.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let bus = memory_bus(
        MemoryBackend::new()
            .max_waiting(2)
            .when_full(WhenFull::Wait(Duration::from_millis(200))),
        gated("slow", "slow.job", &gate),
    )
    .await;
    for _ in 0..2 {
        bus.publish_raw("slow.job", serde_json::json!({}))
            .await
            .unwrap();
    }
    let err = bus
        .publish_raw("slow.job", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EventError::Publish(PublishError::Full { .. })),
        "{err}"
    );
    let g = gate.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        g.add_permits(1000);
    });
    bus.publish_raw("slow.job", serde_json::json!({}))
        .await
        .expect("room came within the timeout");
    bus.shutdown().await.unwrap();
}

/// An event waiting out a retry's backoff still holds its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_waiting_for_its_retry_counts_against_max_waiting() {
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = failed.clone();
    let handler = Handler::new("flaky", "flaky.job", move |_e, _ctx| {
        let first = !f.swap(true, std::sync::atomic::Ordering::SeqCst);
        async move {
            if first {
                Err(HandlerError::msg("try again"))
            } else {
                Ok(())
            }
        }
    })
    .retry(RetryPolicy::attempts(2).backoff(0.5, 0.5));
    let bus = memory_bus(
        MemoryBackend::new()
            .max_waiting(1)
            .when_full(WhenFull::Refuse),
        handler,
    )
    .await;
    bus.publish_raw("flaky.job", serde_json::json!({}))
        .await
        .unwrap();
    eventflow_tests::wait_until("the first attempt failed", || {
        failed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let err = bus
        .publish_raw("flaky.job", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EventError::Publish(PublishError::Full { .. })),
        "{err}"
    );
    bus.shutdown().await.unwrap();
}

fn letter(n: u64, failed_ago: Duration) -> DeadLetter {
    let at = std::time::SystemTime::now() - failed_ago;
    DeadLetter::new(
        "h",
        eventflow_tests::raw_envelope("job.run", serde_json::json!({ "n": n })),
        "failed",
        eventflow::HandlerErrorKind::Failed,
        1,
        at,
        at,
    )
}

/// Memory dead letters are kept up to a count and an age; the oldest go first.
#[tokio::test]
async fn memory_dead_letters_are_kept_up_to_a_count_and_an_age() {
    let store = MemoryDeadLetters::with_retention(3, Some(Duration::from_secs(3600)));
    for n in 0..5 {
        store.put(letter(n, Duration::ZERO)).await.unwrap();
    }
    let kept: Vec<u64> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|l| l.envelope.payload.to_json().unwrap()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [2, 3, 4]);
    assert_eq!(store.evicted(), 2);
    store
        .put(letter(9, Duration::from_secs(7200)))
        .await
        .unwrap();
    assert_eq!(
        store.len().await.unwrap(),
        3,
        "a letter past its age is not kept"
    );
    assert_eq!(store.evicted(), 3);
}

/// A plain `fn` handler that never returns: its timed-out attempts are abandoned (counted,
/// and visible in the pool's figures), they occupy at most the bus's pool of threads, and
/// the process still exits after `shutdown` (the pool's threads do not keep it alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plain_fn_neither_piles_up_threads_nor_keeps_the_process_alive() {
    let worker = env!("CARGO_BIN_EXE_eventflow-test-worker");
    let mut child = tokio::process::Command::new(worker)
        .args(["-", "-", "hung-plain-fn"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = String::new();
    let stdout = child.stdout.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncReadExt;
        let mut stdout = stdout;
        stdout.read_to_string(&mut out).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("the process did not exit after shutdown: a hung plain fn kept it alive");
    assert!(status.success(), "{status:?}: {out}");
    let field = |k: &str| -> u64 {
        out.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {out:?}"))
    };
    assert_eq!(field("abandoned"), 200, "{out}");
    assert_eq!((field("busy"), field("max")), (8, 8), "{out}");
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Note {
    id: Option<i64>,
}

impl eventflow::Model for Note {
    const NAME: &'static str = "fault_note";
    fn id(&self) -> Option<i64> {
        self.id
    }
    fn set_id(&mut self, id: i64) {
        self.id = Some(id);
    }
}

/// A memory store whose bus is shut down gives a model event up at once (one try, counted
/// as set aside), instead of retrying a bus that will never take it.
#[tokio::test]
async fn a_memory_store_on_a_shut_down_bus_gives_its_events_up_at_once() {
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .build()
        .await
        .unwrap();
    let store = eventflow::Store::memory(&bus);
    bus.shutdown().await.unwrap();
    store.create(Note { id: None }).await.unwrap();
    let stats = store.stats();
    assert_eq!(
        (
            stats.events_published,
            stats.publish_retries,
            stats.events_set_aside
        ),
        (0, 1, 1),
        "{stats:?}"
    );
}
