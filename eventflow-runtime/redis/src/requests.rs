//! Requests across processes: the asking process waits on a reply stream of its own, and
//! the worker that handled the request adds the answer to it.
//!
//! The reply stream is `QUEUE:replies:CONSUMER` (the consumer name is unique to the
//! process). The asker registers the event id, publishes the event with `reply_to` set to
//! its stream, and one listener task per process reads the stream (`XREAD BLOCK`), hands
//! each answer to whoever waits for its id and deletes what it read. An answer nobody
//! waits for any more (the request timed out, the asker stopped) is dropped. A worker
//! answers only into the reply streams of its own queue, trims the stream and sets it to
//! expire, so the stream of a process that went away disappears on its own; a stopping
//! process deletes its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use eventflow_runtime::{EventId, Reply};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::oneshot;

use crate::backend::Shared;
use crate::reply::{entries_of, text};

/// How long a reply stream lives after its last answer.
pub(crate) const REPLY_STREAM_TTL: Duration = Duration::from_secs(120);
/// Answers a reply stream keeps at most (approximately) before the oldest go.
const REPLY_STREAM_MAX_LEN: u64 = 10_000;

/// The asking side: who waits for which answer.
#[derive(Default)]
pub(crate) struct Waiting {
    senders: Mutex<HashMap<EventId, oneshot::Sender<Reply>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Waiting {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<EventId, oneshot::Sender<Reply>>> {
        self.senders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the listener.
    pub(crate) fn stop(&self) {
        if let Some(t) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
        self.lock().clear();
    }
}

/// Takes the waiter off the map however the request ends (answered, timed out, dropped).
struct Registered<'a> {
    waiting: &'a Waiting,
    id: EventId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.id);
    }
}

/// The reply stream of this process.
pub(crate) fn reply_key(queue: &str, consumer: &str) -> String {
    format!("{queue}:replies:{consumer}")
}

/// Registers the request, makes sure the listener runs, publishes it and waits for its
/// answer, `None` after `timeout`.
pub(crate) async fn ask(
    shared: &Arc<Shared>,
    mut envelope: eventflow_runtime::Envelope,
    timeout: Duration,
) -> Result<Option<Reply>, eventflow_runtime::PublishError> {
    ensure_listener(shared);
    let (tx, rx) = oneshot::channel();
    let id = envelope.id;
    shared.waiting.lock().insert(id, tx);
    let _registered = Registered {
        waiting: &shared.waiting,
        id,
    };
    envelope.reply_to = Some(shared.keys.replies.clone());
    let json = shared.encode(&envelope)?;
    shared
        .xadd(envelope.priority, &[("envelope", &json)])
        .await
        .map_err(|source| eventflow_runtime::PublishError::Backend {
            name: envelope.name.to_string(),
            source,
        })?;
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => Ok(Some(reply)),
        _ => Ok(None),
    }
}

fn ensure_listener(shared: &Arc<Shared>) {
    let mut listener = shared
        .waiting
        .listener
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if listener.as_ref().is_some_and(|t| !t.is_finished()) {
        return;
    }
    *listener = Some(tokio::spawn(listen(Arc::downgrade(shared))));
}

/// Reads this process's reply stream until the backend is dropped or stopped.
async fn listen(shared: Weak<Shared>) {
    let mut last = "0-0".to_owned();
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        let (client, key) = match shared.upgrade() {
            Some(s) => (s.client.clone(), s.keys.replies.clone()),
            None => return,
        };
        let c = match &mut conn {
            Some(c) => c,
            None => {
                let cfg = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(Duration::from_secs(5)));
                match client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::warn!(error = %e, "eventflow: the reply listener cannot connect; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        };
        let read = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last)
            .query_async::<Value>(c)
            .await;
        let reply = match read {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "eventflow: the reply listener lost its connection; reconnecting");
                conn = None;
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut ids = Vec::new();
        for entry in stream_entries(&reply, &key) {
            last.clone_from(&entry.id);
            let answer = entry
                .fields
                .as_ref()
                .and_then(|f| f.get("reply"))
                .and_then(text)
                .and_then(|t| serde_json::from_str::<Reply>(&t).ok());
            match answer {
                Some(answer) => {
                    if let Some(tx) = shared.waiting.lock().remove(&answer.event_id) {
                        let _ = tx.send(answer);
                    }
                }
                None => {
                    tracing::warn!(id = %entry.id, "eventflow: a reply entry that is not an answer was dropped")
                }
            }
            ids.push(entry.id);
        }
        if !ids.is_empty() {
            let _ = redis::cmd("XDEL")
                .arg(&key)
                .arg(&ids)
                .query_async::<Value>(c)
                .await;
        }
    }
}

/// The entries of an `XREAD` reply for one stream.
fn stream_entries(reply: &Value, key: &str) -> Vec<crate::reply::Entry> {
    let streams = match reply {
        Value::Array(s) => s.clone(),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| Value::Array(vec![k.clone(), v.clone()]))
            .collect(),
        _ => return Vec::new(),
    };
    streams
        .iter()
        .filter_map(|s| match s {
            Value::Array(parts) => parts.get(1).map(|l| entries_of(l, key)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Sends the answer of a handled request to the stream its asker waits on. A `reply_to`
/// outside this queue's reply streams is ignored (an entry cannot make a worker write to
/// any key it names).
pub(crate) async fn answer(
    shared: &Shared,
    envelope: &eventflow_runtime::Envelope,
    report: &eventflow_runtime::DeliveryReport,
) {
    let Some(to) = &envelope.reply_to else {
        return;
    };
    let prefix = format!("{}:replies:", shared.cfg.queue);
    if !to.starts_with(&prefix) || to.len() == prefix.len() {
        tracing::warn!(event = %envelope.name, id = %envelope.id, "eventflow: a request names a reply stream outside its queue; no answer sent");
        return;
    }
    let Some(reply) = Reply::from_report(report) else {
        return;
    };
    let json = match serde_json::to_string(&reply) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "eventflow: cannot serialize an answer");
            return;
        }
    };
    let mut pipe = redis::pipe();
    pipe.cmd("XADD")
        .arg(to)
        .arg("MAXLEN")
        .arg("~")
        .arg(REPLY_STREAM_MAX_LEN)
        .arg("*")
        .arg("reply")
        .arg(&json)
        .ignore();
    pipe.cmd("PEXPIRE")
        .arg(to)
        .arg(u64::try_from(REPLY_STREAM_TTL.as_millis()).unwrap_or(u64::MAX))
        .ignore();
    let mut c = shared.publisher();
    match tokio::time::timeout(shared.cfg.publish_timeout, pipe.query_async::<()>(&mut c)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, event = %envelope.name, "eventflow: the answer to a request was not sent")
        }
        Err(_) => {
            tracing::warn!(event = %envelope.name, "eventflow: sending the answer to a request timed out")
        }
    }
}
