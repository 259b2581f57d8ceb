//! Shared helpers of eventflow's integration tests.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A list that test handlers append to, shared across threads.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Appends an entry.
    pub fn push(&self, s: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.into());
    }

    /// A copy of the entries.
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A Redis namespace of one test: a unique key prefix, deleted when dropped.
pub struct RedisTest {
    /// The server's URL.
    pub url: String,
    /// The key prefix (`queue`) of this test.
    pub queue: String,
}

impl RedisTest {
    /// A plain connection for raw commands.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url.as_str()).expect("valid url");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// The key of this test's stream.
    pub fn stream(&self) -> String {
        format!("{}:stream", self.queue)
    }
}

impl Drop for RedisTest {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.queue))
            .query(&mut conn)
            .unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut conn);
        }
    }
}

/// Connects to the test Redis (`EVENTFLOW_REDIS_URL`, default `redis://127.0.0.1:6379/0`).
/// When it cannot be reached the test is skipped with a loud message, unless
/// `EVENTFLOW_REQUIRE_REDIS=1`, and then the test fails.
pub async fn redis_or_skip(test: &str) -> Option<RedisTest> {
    let url =
        std::env::var("EVENTFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let reached = async {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(std::time::Duration::from_secs(3), reached)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    match result {
        Ok(_) => Some(RedisTest {
            queue: format!(
                "eventflow-test:{test}:{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            url,
        }),
        Err(e) if std::env::var("EVENTFLOW_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("Redis is required (EVENTFLOW_REQUIRE_REDIS=1) but {url} cannot be reached: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: Redis at {url} cannot be reached ({e}); \
                 set EVENTFLOW_REQUIRE_REDIS=1 to make this a failure !!!!!!!!\n"
            );
            None
        }
    }
}

/// A `tracing` subscriber that records every span's name and fields (`key=value `).
#[derive(Clone, Default)]
pub struct SpanCapture {
    spans: Arc<Mutex<Vec<(String, String)>>>,
    next: Arc<AtomicU64>,
}

impl SpanCapture {
    /// The spans so far: (name, fields).
    pub fn spans(&self) -> Vec<(String, String)> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for SpanCapture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((attrs.metadata().name().to_owned(), f.0));
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The value of `key` in a captured span's fields.
pub fn span_field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields
        .split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Polls `done` every 10ms until it holds; panics naming `what` after 10 seconds.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
