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

    /// Settings for this test's queue that poll fast (100 ms blocks, 20 ms promotion).
    pub fn config(&self) -> eventflow::redis::RedisConfig {
        let mut c = eventflow::redis::RedisConfig::new(&self.url);
        c.queue = self.queue.clone();
        c.block = std::time::Duration::from_millis(100);
        c.promote_interval = std::time::Duration::from_millis(20);
        c
    }

    /// Adds an entry with these fields to this test's stream by hand (`XADD`): what a
    /// foreign or hostile producer may write.
    pub async fn xadd(&self, fields: &[(&str, String)]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream()).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(v);
        }
        cmd.query_async(&mut self.conn().await)
            .await
            .expect("XADD of a hand-written entry")
    }
}

/// An envelope for the event `name` with a JSON payload.
pub fn raw_envelope(name: &str, payload: serde_json::Value) -> eventflow::Envelope {
    eventflow::Envelope::with_payload(name.into(), eventflow::Payload::json(payload))
}

/// A worker bus on Redis with one handler, recording outcomes, already consuming.
pub async fn start_redis_worker(
    cfg: eventflow::redis::RedisConfig,
    rec: &eventflow::testing::Recorder,
    handler: eventflow::Handler,
) -> eventflow::EventBus {
    use eventflow::redis::RedisBusExt;
    let bus = eventflow::EventBus::builder()
        .without_registry()
        .redis_config(cfg)
        .recorder(rec)
        .handler(handler)
        .build()
        .await
        .expect("a Redis worker bus");
    bus.start().await.expect("the worker starts");
    bus
}

/// Waits until the bus's consumer group has no pending entry; panics naming `what` after
/// 30 s.
pub async fn wait_acknowledged(bus: &eventflow::EventBus, what: &str) {
    let start = std::time::Instant::now();
    while bus.health().await.pending != Some(0) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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

/// Polls `done` every 10ms until it holds; panics naming `what` after 20 seconds.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A model with every kind of hook, shared by the store tests and the test worker. Hooks
/// log to [`members::hook_log`], keyed by the store's table prefix, so that tests running
/// at once do not see each other's hooks.
pub mod members {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use eventflow::{HookContext, HookError, Model, before_create, hooks};
    use serde::{Deserialize, Serialize};

    static LOG: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

    fn log(ctx: &HookContext, entry: &str) {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .entry(ctx.store().prefix().to_owned())
            .or_default()
            .push(entry.to_owned());
    }

    /// The hooks run by the store with this prefix, in order; clears them.
    pub fn hook_log(prefix: &str) -> Vec<String> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .remove(prefix)
            .unwrap_or_default()
    }

    /// A member of a shop.
    #[derive(eventflow::Model, Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[model(name = "member")]
    pub struct Member {
        /// Assigned by the store.
        #[model(id)]
        pub id: Option<i64>,
        /// Required (a `before_create` hook vetoes an empty one).
        pub username: String,
        /// Lower-cased by a free-function hook.
        pub email: String,
        /// Set by a `before_create` hook.
        pub created_at: Option<i64>,
        /// A member with active orders cannot be deleted.
        pub active_orders: u32,
    }

    impl Member {
        /// A new member.
        pub fn new(username: &str, email: &str) -> Self {
            Member {
                id: None,
                username: username.into(),
                email: email.into(),
                created_at: None,
                active_orders: 0,
            }
        }
    }

    #[hooks]
    impl Member {
        #[before_write]
        fn before_write(&mut self, ctx: &HookContext) {
            log(ctx, "before_write");
        }

        #[before_create]
        async fn stamp(&mut self, ctx: &HookContext) -> Result<(), HookError> {
            log(ctx, "before_create");
            if self.username.is_empty() {
                return Err(HookError::veto("username is required"));
            }
            self.created_at = Some(1_700_000_000);
            Ok(())
        }

        #[before_update]
        fn before_update(&self, ctx: &HookContext) {
            log(ctx, "before_update");
        }

        #[after_create]
        async fn after_create(&self, ctx: &HookContext) {
            assert!(self.id.is_some(), "after-hooks see the stored id");
            log(ctx, "after_create");
        }

        #[after_update]
        fn after_update(&self, ctx: &HookContext) {
            log(ctx, "after_update");
        }

        #[after_write]
        async fn reindex(&self, ctx: &HookContext) -> Result<(), HookError> {
            log(ctx, "after_write");
            if self.username == "after-fails" {
                return Err(HookError::msg("search index down"));
            }
            Ok(())
        }

        #[before_delete]
        fn guard(&self, ctx: &HookContext) -> Result<(), HookError> {
            log(ctx, "before_delete");
            if self.active_orders > 0 {
                return Err(HookError::veto("member has active orders"));
            }
            Ok(())
        }

        #[after_delete]
        fn after_delete(&self, ctx: &HookContext) {
            log(ctx, "after_delete");
        }
    }

    /// Runs after the impl's `before_create` hooks (hooks from elsewhere come after, by name).
    #[before_create(Member)]
    async fn normalize_email(member: &mut Member, ctx: &HookContext) -> Result<(), HookError> {
        log(ctx, "normalize_email");
        member.email = member.email.to_lowercase();
        Ok(())
    }

    /// Sorted before `normalize_email` by name.
    #[before_create(Member)]
    fn audit(member: &Member, ctx: &HookContext) {
        let _ = member.id();
        log(ctx, "audit");
    }
}

/// The test PostgreSQL (`EVENTFLOW_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`) if it answers. When it cannot be reached the
/// test is skipped with a loud message, unless `EVENTFLOW_REQUIRE_POSTGRES=1`, and then the
/// test fails.
pub async fn postgres_or_skip(test: &str) -> Option<String> {
    let url = std::env::var("EVENTFLOW_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let addr = url
        .rsplit('@')
        .next()
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let reached = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect(addr.clone()),
    )
    .await;
    match reached {
        Ok(Ok(_)) => Some(url),
        _ if std::env::var("EVENTFLOW_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!(
                "PostgreSQL is required (EVENTFLOW_REQUIRE_POSTGRES=1) but {addr} cannot be reached"
            )
        }
        _ => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: PostgreSQL at {addr} cannot be reached; \
                 set EVENTFLOW_REQUIRE_POSTGRES=1 to make this a failure !!!!!!!!\n"
            );
            None
        }
    }
}

/// A table prefix unique to one test run: `t<8 hex>_`.
pub fn unique_prefix() -> String {
    format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

impl std::fmt::Debug for SpanCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanCapture").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RedisTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTest").finish_non_exhaustive()
    }
}

/// A bus that only publishes to Redis (never started, no handlers of its own) on the
/// queue of `cfg`: the publisher side of a Redis test.
pub async fn redis_publisher(cfg: eventflow::redis::RedisConfig) -> eventflow::EventBus {
    use eventflow::redis::RedisBusExt;
    eventflow::EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .expect("a Redis publisher bus")
}

/// Captures the spans of this thread into a [`SpanCapture`] (until the guard is dropped),
/// with a current-thread runtime to run the test on: spans made on other threads are not
/// seen, so the test's work stays on this one.
pub fn span_capture_runtime() -> (
    SpanCapture,
    tracing::subscriber::DefaultGuard,
    tokio::runtime::Runtime,
) {
    let capture = SpanCapture::default();
    let guard = tracing::subscriber::set_default(capture.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    (capture, guard, rt)
}

/// A Redis server of one test's own, on a free port, with settings of its own (a password,
/// a small `maxmemory`, an append-only file): started by [`OwnRedis::start`], stopped by
/// its PID when dropped. Its files live in a directory of its own, removed with it.
pub struct OwnRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
    args: Vec<String>,
}

impl OwnRedis {
    /// Starts `redis-server` with `args` after the port and the working directory. When
    /// the binary is missing the test is skipped with a loud message, unless
    /// `EVENTFLOW_REQUIRE_REDIS=1`, and then it fails.
    pub async fn start(test: &str, args: &[&str]) -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("eventflow-{test}-{port}"));
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = match Self::spawn(port, &dir, &args) {
            Ok(c) => c,
            Err(e) if std::env::var("EVENTFLOW_REQUIRE_REDIS").as_deref() == Ok("1") => {
                panic!("redis-server is required (EVENTFLOW_REQUIRE_REDIS=1) but cannot start: {e}")
            }
            Err(e) => {
                eprintln!(
                    "\n!!!!!!!! SKIPPED {test}: redis-server cannot be started ({e}); \
                     set EVENTFLOW_REQUIRE_REDIS=1 to make this a failure !!!!!!!!\n"
                );
                return None;
            }
        };
        let server = OwnRedis {
            port,
            child,
            dir,
            args,
        };
        server.wait_listening().await;
        Some(server)
    }

    fn spawn(
        port: u16,
        dir: &std::path::Path,
        args: &[String],
    ) -> std::io::Result<std::process::Child> {
        std::process::Command::new("redis-server")
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir)
            .arg("--save")
            .arg("")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    }

    /// Kills the server (SIGKILL, by its PID) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, directory and settings (with
    /// `--appendonly yes` it loads what it had written).
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir, &self.args).expect("redis-server restarts");
        self.wait_listening().await;
    }

    /// Waits until the port takes connections (up to 10 s).
    pub async fn wait_listening(&self) {
        for _ in 0..1000 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("redis-server on port {} did not start listening", self.port);
    }

    /// `redis://127.0.0.1:<port>/0`, with `userinfo@` when given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("redis://{u}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl std::fmt::Debug for OwnRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnRedis")
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}
