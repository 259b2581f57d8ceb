//! The outbox relay: publishes the model events a driver's outbox holds, in order, and
//! marks them sent.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Inner, StoreError, bump};
use crate::error::{EventError, PublishError};
use crate::event::Envelope;

/// Rows taken per batch.
const BATCH: usize = 100;

/// The longest wait between relay passes after publishes keep failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What becomes of a model event after one try to publish it.
pub(super) enum Fate {
    /// Published.
    Published,
    /// No handler matches it (and the bus does not allow that): skipped, counted, and the
    /// events after it go on.
    Unhandled(String),
    /// The bus refuses it whatever the moment: set aside with the reason.
    SetAside(String),
    /// A failure that may pass (the backend is away, the bus is shut down): keep it and
    /// try again later.
    Retry(EventError),
}

/// Publishes one model event and says what became of it, counting it.
pub(super) async fn publish_model_event(inner: &Inner, env: Envelope) -> Fate {
    let name = env.name.to_string();
    let fate = match inner.bus.publish_envelope(env).await {
        Ok(()) => Fate::Published,
        Err(EventError::NoHandler(e)) => Fate::Unhandled(e.to_string()),
        Err(
            e @ (EventError::Connection(_)
            | EventError::Publish(PublishError::Backend { .. } | PublishError::ShutDown { .. })),
        ) => Fate::Retry(e),
        Err(e) => Fate::SetAside(e.to_string()),
    };
    match &fate {
        Fate::Published => bump(&inner.counters.events_published),
        Fate::Unhandled(reason) => {
            bump(&inner.counters.events_unhandled);
            tracing::warn!(event = %name, %reason, "eventflow: a model event no handler matches is skipped");
        }
        Fate::SetAside(reason) => {
            bump(&inner.counters.events_set_aside);
            tracing::error!(event = %name, %reason, "eventflow: a model event that cannot be published is set aside");
        }
        Fate::Retry(e) => {
            bump(&inner.counters.publish_retries);
            tracing::warn!(event = %name, error = %e, "eventflow: cannot publish a model event yet; retrying later");
        }
    }
    fate
}

pub(super) async fn relay_loop(
    store: Weak<Inner>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    every: Duration,
) {
    let mut wait = every;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        wait = every;
        loop {
            match relay_once(&inner).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    // Back off while it keeps failing (a database or backend away); a
                    // commit's wake-up still tries at once.
                    wait = wait.saturating_mul(2).min(MAX_BACKOFF.max(every));
                    tracing::warn!(error = %e, retry_in = ?wait, "eventflow: outbox relay failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Publishes up to [`BATCH`] unsent outbox rows in order and marks them sent (or set
/// aside, with the reason); returns how many were marked. A failure that may pass stops
/// the pass at its row, commits what was marked before it, and is returned.
pub(super) async fn relay_once(inner: &Inner) -> Result<usize, StoreError> {
    let Some(mut batch) = inner.driver.outbox_take(BATCH).await? else {
        return Ok(0);
    };
    let rows = batch.rows().to_vec();
    let mut done = 0;
    let mut blocked = None;
    for row in rows {
        let error = match serde_json::from_str::<Envelope>(&row.envelope) {
            Ok(env) => match publish_model_event(inner, env).await {
                Fate::Published => None,
                Fate::Unhandled(reason) => Some(format!("skipped: {reason}")),
                Fate::SetAside(reason) => Some(reason),
                Fate::Retry(e) => {
                    // The row stays unsent; what is marked so far is committed.
                    blocked = Some(e);
                    break;
                }
            },
            Err(e) => {
                bump(&inner.counters.events_set_aside);
                tracing::error!(seq = row.seq, error = %e, "eventflow: a malformed outbox row is set aside");
                Some(format!("malformed outbox row: {e}"))
            }
        };
        batch.mark(row.seq, error.as_deref()).await?;
        done += 1;
    }
    batch.commit().await?;
    match blocked {
        Some(e) => Err(StoreError::Publish(e)),
        None => Ok(done),
    }
}
