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

mod redis_support;
pub use redis_support::*;
