//! Redis for tests: a namespace per test on the shared server, a server of a test's own,
//! and the worker and publisher buses most Redis tests start with.

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

/// The bus's dead letters once there is at least one (polled every 20 ms, for up to 20 s;
/// what there is then, perhaps none).
pub async fn dead_letters_once_any(bus: &eventflow::EventBus) -> Vec<eventflow::DeadLetter> {
    let start = std::time::Instant::now();
    loop {
        let letters = bus.dead_letters().await.expect("dead letters");
        if !letters.is_empty() || start.elapsed() > std::time::Duration::from_secs(20) {
            return letters;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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

    /// Fills the server until it refuses even a small write (with `maxmemory` and
    /// `noeviction`). The filler keeps its connection open (closing it would free the
    /// connection's buffers, and with them room for a write) until it is freed.
    pub async fn fill_until_refused(&self) -> Filler {
        let client = redis::Client::open(self.url(None)).expect("valid url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let mut filler = Filler {
            conn,
            keys: Vec::new(),
        };
        filler.fill().await;
        filler
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

/// Keys that fill a Redis server to its `maxmemory`, and the connection that wrote them.
pub struct Filler {
    conn: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
}

impl Filler {
    /// Writes until even a small write is refused. (Large values first, then ever smaller
    /// ones: a refused large write frees its buffer and leaves room for small ones.)
    pub async fn fill(&mut self) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for size in [256 * 1024, 16 * 1024, 1024, 64, 8] {
            let chunk = "f".repeat(size);
            loop {
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = format!("filler:{n}");
                let r: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&chunk)
                    .query_async(&mut self.conn)
                    .await;
                match r {
                    Ok(()) => self.keys.push(key),
                    Err(e) => {
                        assert!(e.to_string().contains("OOM"), "{e}");
                        break;
                    }
                }
                assert!(
                    self.keys.len() < 1_000_000,
                    "the server never refused a write"
                );
            }
        }
    }

    /// Deletes what it wrote: the server takes writes again.
    pub async fn free(mut self) {
        for chunk in self.keys.chunks(1000) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut self.conn)
                .await
                .expect("DEL of the filler keys");
        }
    }
}

impl std::fmt::Debug for Filler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filler")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Starts the test worker binary (`exe`, from `env!("CARGO_BIN_EXE_eventflow-test-worker")`)
/// with `args`, and waits until it prints `ready`; returns it with the rest of its output.
pub async fn spawn_test_worker(
    exe: &str,
    args: &[&str],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the test worker starts");
    let stdout = child.stdout.take().expect("the worker's stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
        "worker did not start: {ready:?}"
    );
    (child, lines)
}
