//! Faults of the in-process bus found by trying to break it, each kept fixed by a test.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;

use eventflow::{
    BoxFuture, ConnectionError, DeadLetter, DeadLetterStore, EventBus, Handler, HandlerError,
    MemoryBackend, OutcomeStatus,
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
