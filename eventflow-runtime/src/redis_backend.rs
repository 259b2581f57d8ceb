//! The Redis Streams backend (feature `redis`): several processes or machines share the
//! work of one consumer group, at least once.
//!
//! ## Keys
//!
//! With `queue = "myapp"`:
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `myapp:stream` | stream | every published event (field `envelope`, JSON; field `handler` when the entry is for one handler only) |
//! | `myapp:delayed` | sorted set | delayed events and scheduled retries, scored by due time (ms, Redis's clock) |
//! | `myapp:dead` | hash | dead letters by id (JSON) |
//!
//! **One stream per namespace, routing in the worker.** Every worker reads one stream with
//! one `XREADGROUP`, and the bus's compiled router picks the handlers. A stream per event
//! name would need a read over every stream a worker's patterns might match, could not see
//! names that appear later (`user.*` and a new `user.banned`), and would multiply consumer
//! groups and pending lists. The cost: a worker reads events none of its handlers wants
//! (it acknowledges them at once), so give unrelated applications their own `queue`.
//!
//! ## Delivery
//!
//! Publish is `XADD` (with an approximate `MAXLEN` when set). A worker reads with
//! `XREADGROUP` under a consumer name unique to the process (`host-pid-random`, never
//! reused), runs the matching handlers, and acknowledges (`XACK`) only when every handler's
//! outcome is settled: success, dead letter, or a retry scheduled. A retry is a new entry
//! in the delayed set, added in the same Lua script as the `XACK`, so nothing is lost or
//! doubled between the two and no worker sleeps through a backoff. A promoter in each
//! worker moves due entries from the delayed set to the stream in one Lua script per batch;
//! several workers running it at once neither duplicate nor lose entries.
//!
//! On start a worker first re-reads its own pending entries, then reads new ones. Entries
//! left pending by a consumer that died are claimed with `XAUTOCLAIM` once idle for
//! `claim_idle`; a live worker refreshes the idle time of the entries it is still handling
//! (`XCLAIM ... JUSTID` every third of `claim_idle`), so a long handler is not claimed and
//! run a second time elsewhere. The entry's delivery count is added to the envelope's `attempt`; an entry
//! delivered more than `max_deliveries` times (its handler crashed or hung the worker each
//! time) goes to dead letters.
//!
//! An entry that is not a valid envelope (not JSON, missing fields, a bad name) goes to
//! dead letters under the handler name `""` with the reason, and is acknowledged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::backend::{Backend, BackendHealth, Delivery, DeliverySink, Retries};
use crate::bus::OutcomeStatus;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::error::{ConnectionError, HandlerErrorKind, PublishError};
use crate::event::{Envelope, EventName, Payload};
use crate::handler::BoxFuture;

/// Settings of the Redis backend. Build it with [`RedisConfig::new`] and adjust fields, or
/// use the builder's shortcuts (`.redis(url)`, `.queue(..)`, `.consumer_group(..)`, `.pool(..)`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://...` for TLS (server
    /// certificates are checked against the system's trusted roots, or against
    /// [`tls_root_cert_pem`](Self::tls_root_cert_pem) when set).
    pub url: String,
    /// A PEM root certificate to trust for `rediss://` instead of the system's roots (a
    /// private CA).
    pub tls_root_cert_pem: Option<Vec<u8>>,
    /// Key prefix and stream namespace.
    pub queue: String,
    /// Consumer group: workers of one group share the work.
    pub group: String,
    /// Publisher connections (multiplexed: each carries many concurrent commands).
    pub pool_min: usize,
    /// Upper bound on publisher connections.
    pub pool_max: usize,
    /// Approximate `MAXLEN` of the stream; `None` keeps every entry.
    pub max_len: Option<usize>,
    /// Largest serialized envelope accepted by publish, in bytes.
    pub max_entry_bytes: usize,
    /// Entries idle this long in another consumer's pending list are claimed.
    pub claim_idle: Duration,
    /// How long one `XREADGROUP` blocks (also how fast a worker notices shutdown).
    pub block: Duration,
    /// Entries read per call.
    pub batch: usize,
    /// Entries handled at once by one worker.
    pub max_in_flight: usize,
    /// Deliveries of one entry before it goes to dead letters.
    pub max_deliveries: u32,
    /// Bound on one publish (and on each command of the publisher connections).
    pub publish_timeout: Duration,
    /// How often each worker promotes due delayed entries.
    pub promote_interval: Duration,
}

impl RedisConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            tls_root_cert_pem: None,
            queue: "eventflow".into(),
            group: "workers".into(),
            pool_min: 1,
            pool_max: 4,
            max_len: None,
            max_entry_bytes: 1 << 20,
            claim_idle: Duration::from_secs(30),
            block: Duration::from_millis(500),
            batch: 64,
            max_in_flight: 256,
            max_deliveries: 5,
            publish_timeout: Duration::from_secs(5),
            promote_interval: Duration::from_millis(100),
        }
    }
}

struct Keys {
    stream: String,
    delayed: String,
    dead: String,
}

fn conn_err(message: impl Into<String>, source: Option<redis::RedisError>) -> ConnectionError {
    ConnectionError {
        backend: "redis",
        message: message.into(),
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    }
}

const PROMOTE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local maxlen = tonumber(ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local ok, d = pcall(cjson.decode, m)
  local fields = {}
  if ok and type(d) == 'table' and type(d.e) == 'string' then
    fields = {'envelope', d.e}
    if type(d.h) == 'string' then
      table.insert(fields, 'handler')
      table.insert(fields, d.h)
    end
  else
    fields = {'raw', m}
  end
  if maxlen > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
end
return #due
"#;

const SCHEDULE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
"#;

const RESCHEDULE_AND_ACK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[i]), ARGV[i + 1])
end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
"#;

/// Grants a scheduled function's tick if it is later than the last one granted.
const CLAIM_TICK: &str = r#"
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
local tick = tonumber(ARGV[1])
if tick > last then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"#;

const TAKE: &str = r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
"#;

/// Dead letters kept in a Redis hash, visible to every process of the queue.
pub struct RedisDeadLetters {
    conn: ConnectionManager,
    key: String,
}

impl DeadLetterStore for RedisDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), ConnectionError>> {
        Box::pin(async move {
            let json = serde_json::to_string(&letter).map_err(|e| {
                conn_err(
                    format!("cannot serialize dead letter {}: {e}", letter.id),
                    None,
                )
            })?;
            let mut c = self.conn.clone();
            redis::cmd("HSET")
                .arg(&self.key)
                .arg(letter.id.to_string())
                .arg(json)
                .query_async::<i64>(&mut c)
                .await
                .map_err(|e| conn_err("HSET of a dead letter failed", Some(e)))?;
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<DeadLetter>, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let values: Vec<String> = redis::cmd("HVALS")
                .arg(&self.key)
                .query_async(&mut c)
                .await
                .map_err(|e| conn_err("HVALS of dead letters failed", Some(e)))?;
            let mut out: Vec<DeadLetter> = values
                .iter()
                .filter_map(|v| match serde_json::from_str(v) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "eventflow: skipping an unreadable dead letter in Redis");
                        None
                    }
                })
                .collect();
            out.sort_by_key(|l: &DeadLetter| l.failed_at);
            Ok(out)
        })
    }

    fn take(&self, id: uuid::Uuid) -> BoxFuture<'_, Result<Option<DeadLetter>, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            let v: Option<String> = redis::Script::new(TAKE)
                .key(&self.key)
                .arg(id.to_string())
                .invoke_async(&mut c)
                .await
                .map_err(|e| conn_err("taking a dead letter failed", Some(e)))?;
            match v {
                None => Ok(None),
                Some(v) => serde_json::from_str(&v)
                    .map(Some)
                    .map_err(|e| conn_err(format!("dead letter {id} is unreadable: {e}"), None)),
            }
        })
    }

    fn len(&self) -> BoxFuture<'_, Result<usize, ConnectionError>> {
        Box::pin(async move {
            let mut c = self.conn.clone();
            redis::cmd("HLEN")
                .arg(&self.key)
                .query_async::<usize>(&mut c)
                .await
                .map_err(|e| conn_err("HLEN of dead letters failed", Some(e)))
        })
    }
}

struct Shared {
    cfg: RedisConfig,
    keys: Keys,
    client: redis::Client,
    publishers: Vec<ConnectionManager>,
    next: AtomicUsize,
    consumer: String,
    sink: OnceLock<Arc<dyn DeliverySink>>,
    dead: Arc<RedisDeadLetters>,
    stopping: AtomicBool,
    wake: Notify,
    in_flight: Arc<Semaphore>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Plain acknowledgements (no retry to schedule), sent in batches by one task.
    acks: OnceLock<mpsc::UnboundedSender<(String, oneshot::Sender<()>)>>,
    /// Ids of the entries this worker is handling; their idle time is refreshed so that no
    /// other worker claims them while they run.
    running: Mutex<std::collections::HashSet<String>>,
}

/// The Redis Streams backend. See the [module documentation](self).
pub struct RedisBackend {
    shared: Arc<Shared>,
}

fn unique_consumer_name() -> String {
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
                .map_err(|e| {
                    conn_err(format!("cannot connect to {}", redact(&cfg.url)), Some(e))
                })?;
            publishers.push(conn);
        }
        let keys = Keys {
            stream: format!("{}:stream", cfg.queue),
            delayed: format!("{}:delayed", cfg.queue),
            dead: format!("{}:dead", cfg.queue),
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
                consumer: unique_consumer_name(),
                sink: OnceLock::new(),
                dead,
                stopping: AtomicBool::new(false),
                wake: Notify::new(),
                tasks: Mutex::new(Vec::new()),
                acks: OnceLock::new(),
                running: Mutex::new(std::collections::HashSet::new()),
            }),
        })
    }

    /// This process's consumer name in the group.
    pub fn consumer_name(&self) -> &str {
        &self.shared.consumer
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl Shared {
    fn schedule_key(&self, schedule: &str) -> String {
        format!("{}:sched:{schedule}", self.cfg.queue)
    }

    fn publisher(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.publishers.len();
        self.publishers[i].clone()
    }

    fn encode(&self, envelope: &Envelope) -> Result<String, PublishError> {
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
        Ok(json)
    }

    async fn xadd(&self, fields: &[(&str, &str)]) -> Result<(), ConnectionError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.keys.stream);
        if let Some(n) = self.cfg.max_len {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        let mut c = self.publisher();
        match tokio::time::timeout(self.cfg.publish_timeout, cmd.query_async::<String>(&mut c))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(conn_err("XADD failed", Some(e))),
            Err(_) => Err(conn_err(
                format!("XADD took longer than {:?}", self.cfg.publish_timeout),
                None,
            )),
        }
    }
}

fn delayed_member(envelope_json: &str, handler: Option<&str>) -> String {
    serde_json::json!({ "e": envelope_json, "h": handler }).to_string()
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
            tokio::spawn(lease_loop(shared.clone()));
            Ok(())
        })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), PublishError>> {
        Box::pin(async move {
            let json = self.shared.encode(&envelope)?;
            self.shared
                .xadd(&[("envelope", &json)])
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
            let mut inv = script.key(&self.shared.keys.delayed);
            inv.arg(delay.as_millis() as u64)
                .arg(delayed_member(&json, None));
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
                .xadd(&[("envelope", &json), ("handler", &handler)])
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
        Box::pin(async move { health(&shared).await })
    }
}

async fn health(shared: &Shared) -> BackendHealth {
    let mut c = shared.publisher();
    let mut h = BackendHealth::default();
    match redis::cmd("PING").query_async::<String>(&mut c).await {
        Ok(_) => h.reachable = true,
        Err(e) => {
            h.detail = Some(format!("PING failed: {e}"));
            return h;
        }
    }
    if let Ok(Value::Array(groups)) = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&shared.keys.stream)
        .query_async::<Value>(&mut c)
        .await
    {
        for g in groups {
            let map = pairs(&g);
            if map.get("name").and_then(text).as_deref() == Some(shared.cfg.group.as_str()) {
                h.pending = map.get("pending").and_then(int);
                h.lag = map.get("lag").and_then(int);
            }
        }
    }
    h.dead_letters = shared.dead.len().await.ok().map(|n| n as u64);
    h
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// A flat `[k1, v1, k2, v2]` array or a map, as a lookup by key.
fn pairs(v: &Value) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    match v {
        Value::Array(items) => {
            for kv in items.chunks(2) {
                if let [k, v] = kv
                    && let Some(k) = text(k)
                {
                    out.insert(k, v.clone());
                }
            }
        }
        Value::Map(items) => {
            for (k, v) in items {
                if let Some(k) = text(k) {
                    out.insert(k, v.clone());
                }
            }
        }
        _ => {}
    }
    out
}

/// One stream entry: its id and fields (`None` when the entry was trimmed away).
struct Entry {
    id: String,
    fields: Option<HashMap<String, Value>>,
}

fn entries_of(list: &Value) -> Vec<Entry> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if !parts.is_empty() => Some(Entry {
                id: text(&parts[0])?,
                fields: parts.get(1).filter(|f| !matches!(f, Value::Nil)).map(pairs),
            }),
            _ => None,
        })
        .collect()
}

/// The entries of an `XREADGROUP` reply for one stream.
fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(parts) if parts.len() == 2 => entries_of(&parts[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams
            .iter()
            .flat_map(|(_, list)| entries_of(list))
            .collect(),
        _ => Vec::new(),
    }
}

async fn connect_consumer(shared: &Shared) -> Result<MultiplexedConnection, redis::RedisError> {
    // A connection of its own: a blocking read must not stall anyone else's commands, and
    // it must not be cut by a response timeout shorter than the block.
    let cfg = AsyncConnectionConfig::new()
        .set_response_timeout(None)
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&shared.keys.stream)
        .arg(&shared.cfg.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut conn)
        .await;
    match created {
        Ok(()) => Ok(conn),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(conn),
        Err(e) => Err(e),
    }
}

async fn consume_loop(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut conn = match connect_consumer(&shared).await {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "eventflow: Redis consumer cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.wake.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = read_until_error(&shared, &mut conn).await {
            tracing::warn!(error = %e, "eventflow: Redis consumer lost its connection; reconnecting");
        }
    }
}

/// Reads and dispatches entries until shutdown (`Ok`) or a Redis error (`Err`).
async fn read_until_error(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    // Own pending entries first (after a reconnect), then new ones.
    let mut cursor = "0".to_owned();
    let mut last_claim: Option<tokio::time::Instant> = None;
    while !shared.stopping.load(Ordering::SeqCst) {
        if last_claim.is_none_or(|t| t.elapsed() >= shared.cfg.claim_idle / 2) {
            last_claim = Some(tokio::time::Instant::now());
            claim_abandoned(shared, conn).await?;
        }
        let reading_pending = cursor != ">";
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&shared.cfg.group)
            .arg(&shared.consumer)
            .arg("COUNT")
            .arg(shared.cfg.batch);
        if !reading_pending {
            cmd.arg("BLOCK").arg(shared.cfg.block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&shared.keys.stream).arg(&cursor);
        let reply: Value = cmd.query_async(conn).await?;
        let entries = read_reply(&reply);
        if reading_pending {
            match entries.last() {
                Some(last) => cursor = last.id.clone(),
                None => cursor = ">".into(),
            }
            dispatch_redelivered(shared, conn, entries).await?;
        } else {
            for e in entries {
                dispatch_entry(shared, e, 1).await;
            }
        }
    }
    Ok(())
}

/// Claims entries other consumers left pending longer than `claim_idle`.
async fn claim_abandoned(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    let mut start = "0-0".to_owned();
    loop {
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&shared.keys.stream)
            .arg(&shared.cfg.group)
            .arg(&shared.consumer)
            .arg(shared.cfg.claim_idle.as_millis() as u64)
            .arg(&start)
            .arg("COUNT")
            .arg(shared.cfg.batch)
            .query_async(conn)
            .await?;
        let Value::Array(parts) = reply else {
            return Ok(());
        };
        let next = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
        let entries = parts.get(1).map(entries_of).unwrap_or_default();
        if !entries.is_empty() {
            tracing::info!(
                count = entries.len(),
                "eventflow: claimed entries abandoned by another consumer"
            );
        }
        dispatch_redelivered(shared, conn, entries).await?;
        if next == "0-0" {
            return Ok(());
        }
        start = next;
    }
}

/// Dispatches entries that were delivered before (own pending or claimed), each with its
/// delivery count.
async fn dispatch_redelivered(
    shared: &Arc<Shared>,
    conn: &mut MultiplexedConnection,
    entries: Vec<Entry>,
) -> Result<(), redis::RedisError> {
    let counts = delivery_counts(shared, conn, &entries).await?;
    for e in entries {
        let n = counts.get(&e.id).copied().unwrap_or(1);
        dispatch_entry(shared, e, n).await;
    }
    Ok(())
}

/// How many times each entry has been delivered (`XPENDING`, extended form).
async fn delivery_counts(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    entries: &[Entry],
) -> Result<HashMap<String, u32>, redis::RedisError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(HashMap::new());
    };
    let reply: Value = redis::cmd("XPENDING")
        .arg(&shared.keys.stream)
        .arg(&shared.cfg.group)
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&shared.consumer)
        .query_async(conn)
        .await?;
    let mut out = HashMap::new();
    if let Value::Array(rows) = reply {
        for row in rows {
            if let Value::Array(cols) = row
                && let (Some(id), Some(n)) =
                    (cols.first().and_then(text), cols.get(3).and_then(int))
            {
                out.insert(id, n as u32);
            }
        }
    }
    Ok(out)
}

async fn dispatch_entry(shared: &Arc<Shared>, entry: Entry, delivered: u32) {
    // Re-reading own pending entries after a reconnect (or claiming) can meet an entry
    // that is still being handled here: it is not started twice.
    if !shared
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(entry.id.clone())
    {
        return;
    }
    let Ok(permit) = shared.in_flight.clone().acquire_owned().await else {
        return;
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let id = entry.id.clone();
        handle_entry(&shared, entry, delivered).await;
        shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        drop(permit);
    });
}

/// Keeps the entries this worker is handling from looking abandoned: every third of
/// `claim_idle`, `XCLAIM ... JUSTID` to this same consumer resets their idle time (without
/// counting a delivery). A handler that hangs is bounded by its `timeout`, not by this.
async fn lease_loop(shared: Arc<Shared>) {
    let every = (shared.cfg.claim_idle / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        let idle = shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if idle && shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let ids: Vec<String> = shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for chunk in ids.chunks(256) {
            let mut c = shared.publisher();
            let res = redis::cmd("XCLAIM")
                .arg(&shared.keys.stream)
                .arg(&shared.cfg.group)
                .arg(&shared.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async::<Value>(&mut c)
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "eventflow: could not refresh the lease of running entries");
            }
        }
    }
}

/// Why an entry is not a valid envelope, or the envelope and its target handler.
fn parse_entry(
    fields: Option<&HashMap<String, Value>>,
) -> Result<(Envelope, Option<String>), String> {
    let fields = fields.ok_or("the entry has no fields (it was trimmed from the stream)")?;
    let raw = fields.get("envelope").ok_or_else(|| {
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        format!("the entry has no `envelope` field (fields: {names:?})")
    })?;
    let text = text(raw).ok_or("the `envelope` field is not text")?;
    let envelope: Envelope = serde_json::from_str(&text)
        .map_err(|e| format!("the `envelope` field is not a valid envelope: {e}"))?;
    let handler = fields.get("handler").and_then(self::text);
    Ok((envelope, handler))
}

fn raw_fields_json(fields: Option<&HashMap<String, Value>>) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .map(|f| {
            f.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::Value::String(text(v).unwrap_or_else(|| format!("{v:?}"))),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::Value::Object(map)
}

async fn handle_entry(shared: &Arc<Shared>, entry: Entry, delivered: u32) {
    let (mut envelope, handler) = match parse_entry(entry.fields.as_ref()) {
        Ok(v) => v,
        Err(reason) => {
            tracing::error!(id = %entry.id, %reason, "eventflow: invalid stream entry sent to dead letters");
            let mut envelope = Envelope::with_payload(
                EventName::from("eventflow.invalid_entry"),
                Payload::json(
                    serde_json::json!({ "stream_id": entry.id, "fields": raw_fields_json(entry.fields.as_ref()) }),
                ),
            );
            envelope.attempt = delivered;
            dead_letter(
                shared,
                envelope,
                "",
                reason,
                HandlerErrorKind::Payload,
                delivered,
            )
            .await;
            ack(shared, &entry.id, Vec::new()).await;
            return;
        }
    };
    envelope.attempt = envelope.attempt.max(1) + delivered.saturating_sub(1);
    if delivered > shared.cfg.max_deliveries {
        let reason = format!(
            "delivered {delivered} times without being acknowledged (a worker crashed or hung while handling it)"
        );
        dead_letter(
            shared,
            envelope,
            handler.as_deref().unwrap_or("*"),
            reason,
            HandlerErrorKind::Failed,
            delivered,
        )
        .await;
        ack(shared, &entry.id, Vec::new()).await;
        return;
    }
    let Some(sink) = shared.sink.get() else {
        return;
    };
    let report = sink
        .deliver(Delivery {
            envelope: envelope.clone(),
            handler,
            retries: Retries::ByBackend,
        })
        .await;
    if report.cancelled
        || report
            .outcomes
            .iter()
            .any(|o| matches!(o.status, OutcomeStatus::Cancelled))
    {
        // Shutdown cut it short: leave it pending for another consumer to claim.
        return;
    }
    let mut retries = Vec::new();
    for o in &report.outcomes {
        if let OutcomeStatus::RetryScheduled { delay, .. } = &o.status {
            let mut next = envelope.clone();
            next.attempt = o.attempts + 1;
            match serde_json::to_string(&next) {
                Ok(json) => retries.push((
                    delay.as_millis() as u64,
                    delayed_member(&json, Some(&o.handler)),
                )),
                Err(e) => tracing::error!(error = %e, "eventflow: cannot serialize a retry"),
            }
        }
    }
    ack(shared, &entry.id, retries).await;
}

async fn dead_letter(
    shared: &Shared,
    envelope: Envelope,
    handler: &str,
    error: String,
    kind: HandlerErrorKind,
    attempts: u32,
) {
    let now = SystemTime::now();
    let letter = DeadLetter {
        id: uuid::Uuid::new_v4(),
        handler: handler.to_owned(),
        envelope,
        error,
        error_kind: kind,
        attempts,
        first_failed_at: now,
        failed_at: now,
    };
    if let Err(e) = shared.dead.put(letter).await {
        tracing::error!(error = %e, "eventflow: could not store a dead letter");
    }
}

/// Schedules the retries and acknowledges the entry in one script; on a connection error
/// tries again with backoff for a while, then leaves the entry pending (it is delivered
/// again: at least once).
/// Acknowledges `id` once every handler's outcome is settled: in a batch with other plain
/// acknowledgements, or, when retries are to be scheduled, in one script with them.
async fn ack(shared: &Shared, id: &str, retries: Vec<(u64, String)>) {
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

/// Sends plain acknowledgements as one `XACK` per batch (what the ack channel holds at the
/// moment, up to 512), retrying on connection errors.
async fn ack_loop(
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
        let mut backoff = Duration::from_millis(50);
        for _ in 0..8 {
            let mut c = shared.publisher();
            let res = redis::cmd("XACK")
                .arg(&shared.keys.stream)
                .arg(&shared.cfg.group)
                .arg(&ids)
                .query_async::<i64>(&mut c)
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

async fn ack_with_retries(shared: &Shared, id: &str, retries: Vec<(u64, String)>) {
    let script = redis::Script::new(RESCHEDULE_AND_ACK);
    let mut backoff = Duration::from_millis(50);
    for _ in 0..8 {
        let mut inv = script.key(&shared.keys.stream);
        inv.key(&shared.keys.delayed).arg(&shared.cfg.group).arg(id);
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

async fn promote_loop(shared: Arc<Shared>) {
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
