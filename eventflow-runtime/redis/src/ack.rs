//! Settling entries: dead letters, acknowledgements, scheduled retries, and promoting
//! delayed entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eventflow_runtime::{DeadLetter, DeadLetterStore};
use tokio::sync::{mpsc, oneshot};

use crate::backend::Shared;
use crate::scripts::*;

/// Stores a dead letter made by the broker helpers.
/// Stores a dead letter the worker made itself (an invalid entry, a poison entry);
/// whether it was stored. When it was not, the entry must stay pending.
pub(crate) async fn store_dead_letter(shared: &Shared, letter: DeadLetter) -> bool {
    match shared.dead.put(letter).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "eventflow: could not store a dead letter; the entry stays pending");
            false
        }
    }
}

/// Schedules the retries and acknowledges the entry in one script; on a connection error
/// tries again with backoff for a while, then leaves the entry pending (it is delivered
/// again: at least once).
/// Acknowledges `id` once every handler's outcome is settled: in a batch with other plain
/// acknowledgements, or, when retries are to be scheduled, in one script with them.
pub(crate) async fn ack(shared: &Shared, id: &str, retries: Vec<(u64, String)>) {
    if retries.is_empty()
        && let Some(acks) = shared.acks.get()
    {
        let (done, acked) = oneshot::channel();
        if acks.send((id.to_owned(), done)).is_ok() && acked.await.is_ok() {
            return;
        }
    }
    ack_with_retries(shared, id, retries).await;
}

/// Sends plain acknowledgements in one script per batch (what the ack channel holds at the
/// moment, up to 512), retrying on connection errors. Only entries this consumer still
/// owns are acknowledged: one another worker claimed while this one was stopped is that
/// worker's to settle.
pub(crate) async fn ack_loop(
    shared: std::sync::Weak<Shared>,
    mut rx: mpsc::UnboundedReceiver<(String, oneshot::Sender<()>)>,
) {
    while let Some(first) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        let script = redis::Script::new(ACK_OWNED);
        let mut backoff = Duration::from_millis(50);
        for _ in 0..8 {
            let mut c = shared.publisher();
            let res = script
                .key(&shared.keys.stream)
                .arg(&shared.cfg.group)
                .arg(&shared.consumer)
                .arg(&ids)
                .invoke_async::<i64>(&mut c)
                .await;
            match res {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, count = ids.len(), "eventflow: XACK failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        // Entries whose XACK never went through stay pending and are delivered again.
        for (_, done) in batch {
            let _ = done.send(());
        }
    }
}

pub(crate) async fn ack_with_retries(shared: &Shared, id: &str, retries: Vec<(u64, String)>) {
    let script = redis::Script::new(RESCHEDULE_AND_ACK);
    let mut backoff = Duration::from_millis(50);
    for _ in 0..8 {
        let mut inv = script.key(&shared.keys.stream);
        inv.key(&shared.keys.delayed)
            .arg(&shared.cfg.group)
            .arg(&shared.consumer)
            .arg(id);
        for (delay, member) in &retries {
            inv.arg(*delay).arg(member);
        }
        let mut c = shared.publisher();
        match inv.invoke_async::<i64>(&mut c).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, id, "eventflow: XACK failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    tracing::error!(
        id,
        "eventflow: could not acknowledge an entry; it stays pending and will be delivered again"
    );
}

pub(crate) async fn promote_loop(shared: Arc<Shared>) {
    let script = redis::Script::new(PROMOTE);
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut c = shared.publisher();
        let res = script
            .key(&shared.keys.delayed)
            .key(&shared.keys.stream)
            .arg(shared.cfg.batch)
            .arg(shared.cfg.max_len.unwrap_or(0))
            .invoke_async::<i64>(&mut c)
            .await;
        let wait = match res {
            // A full batch: more may be due, go again at once.
            Ok(n) if n as usize >= shared.cfg.batch => Duration::ZERO,
            Ok(_) => shared.cfg.promote_interval,
            Err(e) => {
                tracing::warn!(error = %e, "eventflow: promoting delayed events failed; retrying");
                shared.cfg.promote_interval * 10
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.wake.notified() => {}
        }
    }
}
