//! Settling entries: dead letters, acknowledgements, scheduled retries, and promoting
//! delayed entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eventflow_runtime::{DeadLetter, DeadLetterStore};
use tokio::sync::{mpsc, oneshot};

use crate::backend::Shared;
use crate::scripts::*;

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

/// One acknowledgement for the ack loop: the entry's stream (its lane) and id, whether to
/// check that this consumer still owns it, and who waits for it.
pub(crate) type AckRequest = (String, String, bool, oneshot::Sender<()>);

/// Acknowledges `id` once every handler's outcome is settled: in a batch with other plain
/// acknowledgements, or, when retries are to be scheduled, in one script with them. When
/// this worker may have lost the entry to another (its lease lapsed), only if it still
/// owns it.
pub(crate) async fn ack(shared: &Shared, stream: &str, id: &str, retries: Vec<(u64, String)>) {
    let check = shared.leases.may_be_lost(stream, id, shared.cfg.claim_idle);
    if retries.is_empty()
        && let Some(acks) = shared.acks.get()
    {
        let (done, acked) = oneshot::channel();
        if acks
            .send((stream.to_owned(), id.to_owned(), check, done))
            .is_ok()
            && acked.await.is_ok()
        {
            return;
        }
    }
    ack_with_retries(shared, stream, id, check, retries).await;
}

/// Sends plain acknowledgements in batches (what the ack channel holds at the moment, up
/// to 512), retrying on connection errors. Entries this worker may have lost to another
/// (see [`crate::lease`]) are acknowledged only if it still owns them: one another worker
/// claimed while this one was stopped is that worker's to settle.
pub(crate) async fn ack_loop(
    shared: std::sync::Weak<Shared>,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
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
        let mut streams: Vec<&str> = batch.iter().map(|(s, _, _, _)| s.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            for checked in [false, true] {
                let ids: Vec<&str> = batch
                    .iter()
                    .filter(|(s, _, c, _)| s == stream && *c == checked)
                    .map(|(_, id, _, _)| id.as_str())
                    .collect();
                if !ids.is_empty() {
                    send_acks(&shared, stream, &ids, checked).await;
                }
            }
        }
        // Entries whose XACK never went through stay pending and are delivered again.
        for (_, _, _, done) in batch {
            let _ = done.send(());
        }
    }
}

/// One batch of acknowledgements: a plain `XACK`, or (`checked`) the script that applies
/// only those this consumer still owns; retried on connection errors.
async fn send_acks(shared: &Shared, stream: &str, ids: &[&str], checked: bool) {
    let script = redis::Script::new(ACK_OWNED);
    let mut backoff = Duration::from_millis(50);
    for _ in 0..8 {
        let mut c = shared.publisher();
        let res = if checked {
            script
                .key(stream)
                .arg(&shared.cfg.group)
                .arg(&shared.consumer)
                .arg(ids)
                .invoke_async::<i64>(&mut c)
                .await
        } else {
            redis::cmd("XACK")
                .arg(stream)
                .arg(&shared.cfg.group)
                .arg(ids)
                .query_async::<i64>(&mut c)
                .await
        };
        match res {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, count = ids.len(), "eventflow: XACK failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

pub(crate) async fn ack_with_retries(
    shared: &Shared,
    stream: &str,
    id: &str,
    check: bool,
    retries: Vec<(u64, String)>,
) {
    let script = redis::Script::new(RESCHEDULE_AND_ACK);
    let mut backoff = Duration::from_millis(50);
    for _ in 0..8 {
        let mut inv = script.key(stream);
        inv.key(&shared.keys.delayed)
            .arg(&shared.cfg.group)
            .arg(&shared.consumer)
            .arg(id)
            .arg(if check { "1" } else { "0" });
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
            .key(&shared.keys.bell)
            .arg(shared.cfg.batch)
            .arg(shared.cfg.max_len.unwrap_or(0))
            .arg(shared.lane_prefix())
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
