//! A transaction's writes: hooks before, the driver's write, the model event and the
//! after-hooks recorded for the commit.

use std::sync::Arc;

use super::doc::{changed_fields, from_doc, to_doc};
use super::driver::DriverTx;
use super::hooks::{run_after, run_before};
use super::{Store, StoreError, bump, relay};
use crate::event::{Envelope, EventName, Payload};
use crate::model::{Model, ModelEvent, Operation};
use crate::util::BoxFuture;

type AfterCommit = Box<dyn FnOnce(Store) -> BoxFuture<'static, ()> + Send>;

pub(super) struct TxState {
    db: Box<dyn DriverTx>,
    after: Vec<AfterCommit>,
    /// Events of a store without an outbox, published after the commit.
    events: Vec<Envelope>,
}

impl TxState {
    pub(super) async fn rollback(self) {
        if let Err(e) = self.db.rollback().await {
            tracing::error!(error = %e, "eventflow: rollback failed");
        }
    }

    pub(super) async fn commit(self, store: &Store) -> Result<(), StoreError> {
        let TxState { db, after, events } = self;
        db.commit().await?;
        if store.inner.driver.has_outbox() {
            // The outbox rows are committed: the relay can publish them now.
            store.inner.relay.notify_one();
        }
        bump(&store.inner.counters.commits);
        for run in after {
            run(store.clone()).await;
        }
        // Without an outbox the events go out now, in order, each judged as the relay
        // judges an outbox row; one that fails for a reason that may pass is tried again
        // with backoff, a few times, since nothing keeps it past the process.
        for env in events {
            publish_now(&store.inner, env).await;
        }
        Ok(())
    }
}

/// A running transaction of [`Store::transaction`]. Cheap to clone; it ends when the
/// closure returns.
#[derive(Clone)]
pub struct Tx {
    store: Store,
    state: Arc<tokio::sync::Mutex<Option<TxState>>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Tx {
    pub(super) async fn begin(store: &Store) -> Result<Tx, StoreError> {
        let db = store.inner.driver.begin().await?;
        Ok(Tx {
            store: store.clone(),
            state: Arc::new(tokio::sync::Mutex::new(Some(TxState {
                db,
                after: Vec::new(),
                events: Vec::new(),
            }))),
        })
    }

    pub(super) fn take(&self) -> Result<TxState, StoreError> {
        self.state
            .try_lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or(StoreError::Ended)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates `model` in this transaction.
    pub async fn create<M: Model>(&self, mut model: M) -> Result<M, StoreError> {
        let op = Operation::Create;
        run_before(&self.store, op, &mut model).await?;
        let doc = to_doc(&model)?;
        let table = self.store.table(M::NAME);
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        let id = state.db.insert(&table, &doc).await?;
        model.set_id(id);
        self.written(state, op, model.clone(), Vec::new()).await?;
        Ok(model)
    }

    /// Updates the stored `model` in this transaction; returns it as written.
    pub async fn update<M: Model>(&self, model: &M) -> Result<M, StoreError> {
        let op = Operation::Update;
        let id = model.id().ok_or(StoreError::NoId {
            model: M::NAME,
            operation: op,
        })?;
        let mut model = model.clone();
        run_before(&self.store, op, &mut model).await?;
        model.set_id(id);
        let doc = to_doc(&model)?;
        let table = self.store.table(M::NAME);
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        let old = state.db.get(&table, id).await?;
        let old = old.ok_or(StoreError::NotFound { model: M::NAME, id })?;
        // The stored document may lack the id the row carries: compare as models.
        let old = to_doc(&from_doc::<M>(old, id)?)?;
        let changed = changed_fields(&old, &doc);
        state.db.update(&table, id, &doc).await?;
        self.written(state, op, model.clone(), changed).await?;
        Ok(model)
    }

    /// Deletes the stored `model` in this transaction.
    pub async fn delete<M: Model>(&self, model: &M) -> Result<(), StoreError> {
        let op = Operation::Delete;
        let id = model.id().ok_or(StoreError::NoId {
            model: M::NAME,
            operation: op,
        })?;
        let mut model = model.clone();
        run_before(&self.store, op, &mut model).await?;
        let table = self.store.table(M::NAME);
        let mut guard = self.state.lock().await;
        let state = guard.as_mut().ok_or(StoreError::Ended)?;
        if state.db.get(&table, id).await?.is_none() {
            return Err(StoreError::NotFound { model: M::NAME, id });
        }
        state.db.delete(&table, id).await?;
        self.written(state, op, model, Vec::new()).await
    }

    /// Records the model event (outbox, or for after the commit) and the after-hooks of
    /// a write.
    async fn written<M: Model>(
        &self,
        state: &mut TxState,
        op: Operation,
        model: M,
        changed: Vec<String>,
    ) -> Result<(), StoreError> {
        let event = ModelEvent {
            kind: op.event(),
            model: model.clone(),
            changed,
        };
        if self.store.inner.driver.has_outbox() {
            let name = event.name();
            let payload = serde_json::to_value(&event).map_err(|source| StoreError::Serde {
                model: M::NAME,
                source,
            })?;
            let env = Envelope::with_payload(EventName::from(name), Payload::json(payload));
            state.db.outbox_push(&env).await?;
        } else {
            state.events.push(event.envelope());
        }
        state.after.push(Box::new(move |store: Store| {
            Box::pin(async move { run_after(&store, op, &model).await })
        }));
        Ok(())
    }
}

/// Tries to publish a model event of a store without an outbox: retries a failure that
/// may pass with backoff (0.1 s doubling, [`NOW_TRIES`] tries), then gives it up with an
/// error in the log and the `events_set_aside` count. A bus that is shut down never takes
/// it: given up at once.
async fn publish_now(inner: &super::Inner, env: Envelope) {
    let mut delay = std::time::Duration::from_millis(100);
    for tries in 1..=NOW_TRIES {
        let e = match relay::publish_model_event(inner, env.clone()).await {
            relay::Fate::Retry(e) => e,
            _ => return,
        };
        let shut_down = matches!(
            e,
            crate::error::EventError::Publish(crate::error::PublishError::ShutDown { .. })
        );
        if shut_down || tries == NOW_TRIES {
            bump(&inner.counters.events_set_aside);
            tracing::error!(error = %e, "eventflow: a model event could not be published and is given up");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
}

/// Tries of [`publish_now`].
const NOW_TRIES: u32 = 5;
