//! Testing support: a [`Recorder`] captures what a bus published and how each handler
//! ended (what earnorm's `MockBackend`, a fake bus for tests, records; and basefunctions' per-handler results).
//!
//! ```
//! use eventflow_runtime::{EventBus, Handler, HandlerError, testing::Recorder};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> eventflow_runtime::Result<()> {
//! let recorder = Recorder::new();
//! let bus = EventBus::builder()
//!     .without_registry()
//!     .recorder(&recorder)
//!     .handler(Handler::new("audit", "user.*", |_env, _ctx| async {Ok::<(), HandlerError>(()) }))
//!     .build()
//!     .await?;
//! bus.publish_raw("user.created", serde_json::json!({"id": 1})).await?;
//! let outcomes = recorder.wait_for_outcomes(1, std::time::Duration::from_secs(5)).await;
//! assert_eq!(recorder.published_names(), ["user.created"]);
//! assert!(outcomes[0].succeeded());
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::event::{Envelope, EventId};

/// How one handler's delivery of one event ended, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedOutcome {
    /// The handler.
    pub handler: String,
    /// The event's id.
    pub event_id: EventId,
    /// The event's name.
    pub event: String,
    /// Attempts made.
    pub attempts: u32,
    /// The final error, if it did not succeed.
    pub error: Option<String>,
    /// The handler's filter rejected the event (it was not delivered).
    pub filtered: bool,
}

impl RecordedOutcome {
    /// Whether the handler succeeded.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && !self.filtered
    }
}

#[derive(Default)]
struct State {
    published: Vec<Envelope>,
    outcomes: Vec<RecordedOutcome>,
}

/// Records published events and handler outcomes. Clones share one record.
#[derive(Clone, Default)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl Recorder {
    /// An empty recorder; attach it with
    /// [`EventBusBuilder::recorder`](crate::EventBusBuilder::recorder).
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::util::lock(&self.state)
    }

    pub(crate) fn record_published(&self, env: &Envelope) {
        self.lock().published.push(env.clone());
        self.changed.notify_waiters();
    }

    pub(crate) fn record_outcome(
        &self,
        handler: &str,
        env: &Envelope,
        attempts: u32,
        error: Option<String>,
    ) {
        self.push_outcome(handler, env, attempts, error, false);
    }

    pub(crate) fn record_filtered(&self, handler: &str, env: &Envelope) {
        self.push_outcome(handler, env, 0, None, true);
    }

    fn push_outcome(
        &self,
        handler: &str,
        env: &Envelope,
        attempts: u32,
        error: Option<String>,
        filtered: bool,
    ) {
        self.lock().outcomes.push(RecordedOutcome {
            handler: handler.to_owned(),
            event_id: env.id,
            event: env.name.to_string(),
            attempts,
            error,
            filtered,
        });
        self.changed.notify_waiters();
    }

    /// Every event published, in order.
    pub fn published(&self) -> Vec<Envelope> {
        self.lock().published.clone()
    }

    /// The names of the events published, in order.
    pub fn published_names(&self) -> Vec<String> {
        self.lock()
            .published
            .iter()
            .map(|e| e.name.to_string())
            .collect()
    }

    /// Every handler outcome, in the order they ended.
    pub fn outcomes(&self) -> Vec<RecordedOutcome> {
        self.lock().outcomes.clone()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.published.clear();
        st.outcomes.clear();
    }

    /// Waits until at least `n` outcomes are recorded or `timeout` passes, and returns the
    /// outcomes recorded by then.
    pub async fn wait_for_outcomes(&self, n: usize, timeout: Duration) -> Vec<RecordedOutcome> {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let changed = self.changed.notified();
                if self.lock().outcomes.len() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await;
        self.outcomes()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}
