//! The backend itself: publisher connections, publishing, and the `Backend` trait.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use eventflow_runtime::backend::broker;
use eventflow_runtime::{
    Backend, BackendHealth, BoxFuture, ConnectionError, DeadLetterStore, DeliverySink, Envelope,
    PublishError,
};
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::ack::*;
use crate::config::{RedisConfig, redact};
use crate::dead_letters::RedisDeadLetters;
use crate::scripts::*;
use crate::worker::*;

pub(crate) struct Shared {
    pub(crate) cfg: RedisConfig,
    pub(crate) keys: Keys,
    pub(crate) client: redis::Client,
    pub(crate) publishers: Vec<ConnectionManager>,
    pub(crate) next: AtomicUsize,
    pub(crate) consumer: String,
    pub(crate) sink: OnceLock<Arc<dyn DeliverySink>>,
    pub(crate) dead: Arc<RedisDeadLetters>,
    pub(crate) stopping: AtomicBool,
    pub(crate) wake: Notify,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Plain acknowledgements (no retry to schedule), sent in batches by one task.
    pub(crate) acks: OnceLock<mpsc::UnboundedSender<crate::ack::AckRequest>>,
    /// The entries this worker is handling, and the lease it holds on them (their idle
    /// time is refreshed so that no other worker claims them while they run).
    pub(crate) leases: crate::lease::Leases,
    /// Entries this worker has no handler for, left to the other workers of the group.
    pub(crate) left: crate::claim::Left,
    /// The requests of this process waiting for their answers.
    pub(crate) waiting: crate::requests::Waiting,
}

/// The Redis Streams backend. See the [crate documentation](crate).
pub struct RedisBackend {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) fn unique_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let rand = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &rand[..8])
}

impl RedisBackend {
    /// Connects the publisher connections and checks the server answers.
    pub async fn connect(cfg: RedisConfig) -> Result<Self, ConnectionError> {
        if cfg.url.starts_with("rediss://") {
            // One crypto provider for the process; an error means one is already installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = match &cfg.tls_root_cert_pem {
            Some(pem) => redis::Client::build_with_tls(
                cfg.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(cfg.url.as_str()),
        }
        .map_err(|e| conn_err(format!("invalid Redis URL `{}`", redact(&cfg.url)), Some(e)))?;
        let manager_cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.publish_timeout))
            .set_connection_timeout(Some(cfg.publish_timeout))
            .set_number_of_retries(2);
        let n = cfg.pool_min.clamp(1, cfg.pool_max.max(1));
        let mut publishers = Vec::with_capacity(n);
        for _ in 0..n {
            let conn = ConnectionManager::new_with_config(client.clone(), manager_cfg.clone())
                .await
                .map_err(|e| conn_err(crate::access::access_problem(&e, &cfg.url), Some(e)))?;
            publishers.push(conn);
        }
        crate::access::check_access(&mut publishers[0], &cfg.url).await?;
        let consumer = unique_consumer_name();
        let keys = Keys {
            replies: crate::requests::reply_key(&cfg.queue, &consumer),
            lanes: format!("{}:lanes", cfg.queue),
            stream: format!("{}:stream", cfg.queue),
            delayed: format!("{}:delayed", cfg.queue),
            dead: format!("{}:dead", cfg.queue),
            bell: format!("{}:bell", cfg.queue),
        };
        let dead = Arc::new(RedisDeadLetters {
            conn: publishers[0].clone(),
            key: keys.dead.clone(),
        });
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
                cfg,
                keys,
                client,
                publishers,
                next: AtomicUsize::new(0),
                consumer,
                sink: OnceLock::new(),
                dead,
                stopping: AtomicBool::new(false),
                wake: Notify::new(),
                tasks: Mutex::new(Vec::new()),
                acks: OnceLock::new(),
                leases: crate::lease::Leases::default(),
                left: crate::claim::Left::default(),
                waiting: crate::requests::Waiting::default(),
            }),
        })
    }

    /// This process's consumer name in the group.
    pub fn consumer_name(&self) -> &str {
        &self.shared.consumer
    }
}

pub(crate) fn conn_err(
    message: impl Into<String>,
    source: Option<redis::RedisError>,
) -> ConnectionError {
    ConnectionError {
        backend: "redis",
        message: message.into(),
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    }
}

impl Shared {
    pub(crate) fn schedule_key(&self, schedule: &str) -> String {
        format!("{}:sched:{schedule}", self.cfg.queue)
    }

    pub(crate) fn publisher(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        self.publishers[i].clone()
    }

    pub(crate) fn encode(&self, envelope: &Envelope) -> Result<String, PublishError> {
        let json = serde_json::to_string(envelope).map_err(|source| PublishError::Serialize {
            name: envelope.name.to_string(),
            source,
        })?;
        if json.len() > self.cfg.max_entry_bytes {
            return Err(PublishError::TooLarge {
                name: envelope.name.to_string(),
                size: json.len(),
                max: self.cfg.max_entry_bytes,
            });
        }
        if let Some(depth) = broker::nesting_exceeds(&json, broker::MAX_ENTRY_NESTING) {
            return Err(PublishError::TooDeep {
                name: envelope.name.to_string(),
                depth,
                max: broker::MAX_ENTRY_NESTING,
            });
        }
        Ok(json)
    }

    /// Adds an entry to the stream of its priority's lane (entering the lane among the
    /// queue's lanes first) and rings the bell for idle workers, in one round trip. The
    /// publish succeeded when the entry was added, whatever became of the bell.
    pub(crate) async fn xadd(
        &self,
        priority: i32,
        fields: &[(&str, &str)],
    ) -> Result<(), ConnectionError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let lane = crate::lanes::lane_of(priority);
        let stream = self.lane_stream(priority);
        let mut xadd_at = 0;
        if lane != 0 {
            pipe.cmd("ZADD")
                .arg(&self.keys.lanes)
                .arg("NX")
                .arg(lane)
                .arg(&*stream);
            xadd_at = 1;
        }
        let cmd = pipe.cmd("XADD").arg(&*stream);
        if let Some(n) = self.cfg.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        pipe.cmd("XADD")
            .arg(&self.keys.bell)
            .arg("MAXLEN")
            .arg(1)
            .arg("*")
            .arg("b")
            .arg(1);
        let mut c = self.publisher();
        let replies = tokio::time::timeout(
            self.cfg.publish_timeout,
            pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut c),
        )
        .await;
        match replies {
            Ok(Ok(mut r)) if r.len() > xadd_at => match r.swap_remove(xadd_at) {
                Ok(_) => Ok(()),
                Err(e) => Err(conn_err("XADD failed", Some(e))),
            },
            Ok(Ok(_)) => Err(conn_err("XADD failed: no reply", None)),
            Ok(Err(e)) => Err(conn_err("XADD failed", Some(e))),
            Err(_) => Err(conn_err(
                format!("XADD took longer than {:?}", self.cfg.publish_timeout),
                None,
            )),
        }
    }
}

/// A delayed set's member: the envelope, the one handler it is for (a retry), and the
/// stream of its lane.
pub(crate) fn delayed_member(envelope_json: &str, handler: Option<&str>, stream: &str) -> String {
    serde_json::json!({"e": envelope_json, "h": handler, "s": stream }).to_string()
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn start(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let res = self
            .shared
            .sink
            .set(sink)
            .map_err(|_| conn_err("this backend is already started by another bus", None));
        Box::pin(async move { res })
    }

    fn consume(&self) -> BoxFuture<'_, Result<(), ConnectionError>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut tasks = shared.tasks.lock().unwrap_or_else(|p| p.into_inner());
            if !tasks.is_empty() {
                return Ok(());
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = shared.acks.set(tx);
            // Not among `tasks`: acknowledgements go on after reading stops, until the
            // backend itself is dropped.
            tokio::spawn(ack_loop(Arc::downgrade(&shared), rx));
            tasks.push(tokio::spawn(consume_loop(shared.clone())));
            tasks.push(tokio::spawn(promote_loop(shared.clone())));
            // Not among `tasks`: leases go on while in-flight work drains after reading stops.
            tokio::spawn(crate::lease::lease_loop(shared.clone()));
            Ok(())
        })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let json = self.shared.encode(&envelope)?;
            self.shared
                .xadd(envelope.priority, &[("envelope", &json)])
                .await
                .map_err(|source| PublishError::Backend {
                    name: envelope.name.to_string(),
                    source,
                })
        })
    }

    fn publish_delayed(
        &self,
        envelope: Envelope,
        delay: Duration,
    ) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let json = self.shared.encode(&envelope)?;
            let mut c = self.shared.publisher();
            let script = redis::Script::new(SCHEDULE);
            let lane = self.shared.lane_stream(envelope.priority);
            let mut inv = script.key(&self.shared.keys.delayed);
            inv.key(&self.shared.keys.lanes)
                .arg(delay.as_millis() as u64)
                .arg(delayed_member(&json, None, &lane))
                .arg(crate::lanes::lane_of(envelope.priority))
                .arg(&*lane);
            let call = inv.invoke_async::<i64>(&mut c);
            let backend_err = |message: String, source| PublishError::Backend {
                name: envelope.name.to_string(),
                source: conn_err(message, source),
            };
            match tokio::time::timeout(self.shared.cfg.publish_timeout, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(backend_err(
                    "scheduling a delayed event failed".into(),
                    Some(e),
                )),
                Err(_) => Err(backend_err(
                    "scheduling a delayed event timed out".into(),
                    None,
                )),
            }
        })
    }

    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Option<BoxFuture<'_, Result<Option<eventflow_runtime::Reply>, PublishError>>> {
        Some(Box::pin(crate::requests::ask(
            &self.shared,
            envelope,
            timeout,
        )))
    }

    fn delayed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'_, Result<eventflow_runtime::DelayedPage, ConnectionError>> {
        let cursor = cursor.map(str::to_owned);
        Box::pin(async move { crate::delayed::page(&self.shared, cursor.as_deref(), limit).await })
    }

    fn workers(
        &self,
    ) -> BoxFuture<'_, Result<Vec<eventflow_runtime::WorkerInfo>, ConnectionError>> {
        Box::pin(crate::consumers::list(&self.shared))
    }

    fn cancel_delayed(
        &self,
        id: eventflow_runtime::EventId,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        Box::pin(crate::delayed::cancel(&self.shared, id))
    }

    fn requeue(
        &self,
        envelope: Envelope,
        handler: String,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        Box::pin(async move {
            let json = self
                .shared
                .encode(&envelope)
                .map_err(|e| conn_err(format!("cannot requeue: {e}"), None))?;
            self.shared
                .xadd(
                    envelope.priority,
                    &[("envelope", &json), ("handler", &handler)],
                )
                .await?;
            Ok(true)
        })
    }

    /// One atomic script on `{queue}:sched:{schedule}`, which holds the last tick granted.
    fn claim_tick(
        &self,
        schedule: &str,
        tick_ms: u64,
    ) -> BoxFuture<'_, Result<bool, ConnectionError>> {
        let key = self.shared.schedule_key(schedule);
        let schedule = schedule.to_owned();
        Box::pin(async move {
            let mut c = self.shared.publisher();
            let script = redis::Script::new(CLAIM_TICK);
            let mut inv = script.key(&key);
            inv.arg(tick_ms);
            match tokio::time::timeout(
                self.shared.cfg.publish_timeout,
                inv.invoke_async::<i64>(&mut c),
            )
            .await
            {
                Ok(Ok(granted)) => Ok(granted == 1),
                Ok(Err(e)) => Err(conn_err(
                    format!("claiming a tick of `{schedule}` failed"),
                    Some(e),
                )),
                Err(_) => Err(conn_err(
                    format!("claiming a tick of `{schedule}` timed out"),
                    None,
                )),
            }
        })
    }

    fn last_tick(&self, schedule: &str) -> BoxFuture<'_, Result<Option<u64>, ConnectionError>> {
        let key = self.shared.schedule_key(schedule);
        let schedule = schedule.to_owned();
        Box::pin(async move {
            let mut c = self.shared.publisher();
            let mut cmd = redis::cmd("GET");
            cmd.arg(&key);
            let get = cmd.query_async::<Option<u64>>(&mut c);
            match tokio::time::timeout(self.shared.cfg.publish_timeout, get).await {
                Ok(r) => r.map_err(|e| {
                    conn_err(
                        format!("reading the last tick of `{schedule}` failed"),
                        Some(e),
                    )
                }),
                Err(_) => Err(conn_err(
                    format!("reading the last tick of `{schedule}` timed out"),
                    None,
                )),
            }
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        let shared = self.shared.clone();
        Box::pin(async move {
            shared.stopping.store(true, Ordering::SeqCst);
            shared.wake.notify_waiters();
            // Nobody waits on this process's reply stream any more.
            shared.waiting.stop();
            let mut c = shared.publisher();
            let _ = tokio::time::timeout(
                shared.cfg.publish_timeout,
                redis::cmd("DEL")
                    .arg(&shared.keys.replies)
                    .query_async::<Value>(&mut c),
            )
            .await;
            let tasks: Vec<_> =
                std::mem::take(&mut *shared.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            for t in tasks {
                let _ = tokio::time::timeout(shared.cfg.block + Duration::from_secs(1), t).await;
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        let shared = self.shared.clone();
        Box::pin(async move {
            // Every entry task holds a permit until its acknowledgement is done.
            let all = shared.cfg.max_in_flight.max(1) as u32;
            let _ =
                tokio::time::timeout(Duration::from_secs(10), shared.in_flight.acquire_many(all))
                    .await;
        })
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetterStore> {
        self.shared.dead.clone()
    }

    fn health(&self) -> BoxFuture<'_, BackendHealth> {
        let shared = self.shared.clone();
        Box::pin(async move { crate::health::health(&shared).await })
    }
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}
