//! The outbox relay: publishes the model events a driver's outbox holds, in order, and
//! marks them sent.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Inner, StoreError, bump};
use crate::event::Envelope;

/// Rows taken per batch.
const BATCH: usize = 100;

pub(super) async fn relay_loop(
    store: Weak<Inner>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    every: Duration,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        loop {
            match relay_once(&inner).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "eventflow: outbox relay failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Publishes up to [`BATCH`] unsent outbox rows in order and marks them sent; returns how
/// many were marked.
pub(super) async fn relay_once(inner: &Inner) -> Result<usize, StoreError> {
    let Some(mut batch) = inner.driver.outbox_take(BATCH).await? else {
        return Ok(0);
    };
    let rows = batch.rows().to_vec();
    let mut done = 0;
    for row in rows {
        let error = match serde_json::from_str::<Envelope>(&row.envelope) {
            Ok(env) => match inner.bus.publish_envelope(env).await {
                Ok(()) => {
                    bump(&inner.counters.events_published);
                    None
                }
                Err(e) => {
                    // The row stays unsent; what is marked so far is committed.
                    tracing::warn!(error = %e, "eventflow: cannot publish a model event yet");
                    break;
                }
            },
            Err(e) => {
                tracing::error!(seq = row.seq, error = %e, "eventflow: a malformed outbox row is set aside");
                Some(e.to_string())
            }
        };
        batch.mark(row.seq, error.as_deref()).await?;
        done += 1;
    }
    batch.commit().await?;
    Ok(done)
}
