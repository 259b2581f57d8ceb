//! The conformance suite every backend runs: [`backend_suite!`](crate::backend_suite)
//! expands to one test per function of this module, each on a namespace of its own.
//!
//! A backend package implements [`BackendFactory`] for a value that attaches its backend
//! to a bus builder, and invokes the macro in a test file:
//!
//! ```ignore
//! struct Memory;
//! impl eventflow::testing::BackendFactory for Memory {
//!     fn name(&self) -> &'static str {"memory" }
//!     fn attach<'a>(&'a self, b: EventBusBuilder, _ns: &'a str) -> BoxFuture<'a, Option<EventBusBuilder>> {
//!         Box::pin(async move {Some(b.backend(MemoryBackend::new())) })
//!     }
//! }
//! eventflow::backend_suite!(Memory);
//! ```
//!
//! The tests need `tokio` (with its `macros` and `rt-multi-thread` features) in the crate
//! that invokes the macro.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bus::{EventBus, EventBusBuilder, Handler};
use crate::dead_letter::DeadLetterQuery;
use crate::error::HandlerError;
use crate::event::{Envelope, EventId, Payload};
use crate::retry::RetryPolicy;
use crate::util::{BoxFuture, lock};

/// A backend under test. See the [module documentation](self).
pub trait BackendFactory: Send + Sync + 'static {
    /// A short name, for messages.
    fn name(&self) -> &'static str;
    /// Attaches a backend on namespace `ns` to `builder`. Builders attached with one `ns`
    /// share its queue (on a backend that [`shares_queue`](Self::shares_queue)). `None`
    /// skips the test: the backend's server cannot be reached (say so loudly; a factory
    /// that must not skip panics instead).
    fn attach<'a>(
        &'a self,
        builder: EventBusBuilder,
        ns: &'a str,
    ) -> BoxFuture<'a, Option<EventBusBuilder>>;
    /// Whether two buses on one namespace share its work (a network backend). The
    /// shutdown test runs only then. Such a backend should claim entries a stopped worker
    /// left within a few seconds (a short claim time) for the suite.
    fn shares_queue(&self) -> bool {
        false
    }
    /// Writes an entry that is not a valid envelope into the namespace's queue; `false`
    /// when the backend has no such thing (the memory backend), and the test is skipped.
    fn inject_invalid<'a>(&'a self, _ns: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }
    /// Removes what a test left on namespace `ns`.
    fn cleanup<'a>(&'a self, _ns: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A namespace no other test uses.
fn namespace(test: &str) -> String {
    format!(
        "efsuite_{test}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Events seen by id, with the time of each attempt.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<EventId, Vec<Instant>>>>);

impl Seen {
    fn note(&self, id: EventId) -> usize {
        let mut m = lock(&self.0);
        let v = m.entry(id).or_default();
        v.push(Instant::now());
        v.len()
    }

    fn events(&self) -> usize {
        lock(&self.0).len()
    }

    fn attempts(&self) -> usize {
        lock(&self.0).values().map(Vec::len).sum()
    }

    fn times(&self, id: EventId) -> Vec<Instant> {
        lock(&self.0).get(&id).cloned().unwrap_or_default()
    }

    async fn wait(&self, what: impl Fn(&Seen) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if what(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        what(self)
    }
}

fn event(name: &str, n: u64) -> Envelope {
    Envelope::with_payload(name.into(), Payload::json(serde_json::json!({"n": n })))
}

/// Builds and starts a bus with `handlers` on the factory's backend, or `None` to skip.
async fn start<F: BackendFactory>(f: &F, ns: &str, handlers: Vec<Handler>) -> Option<EventBus> {
    let mut b = EventBus::builder()
        .without_registry()
        .schedules(false)
        .shutdown_timeout(Duration::from_millis(300));
    for h in handlers {
        b = b.handler(h);
    }
    let Some(b) = f.attach(b, ns).await else {
        eprintln!(
            "SKIPPED: the {} backend cannot be reached; its conformance test did not run",
            f.name()
        );
        return None;
    };
    let bus = match b.build().await {
        Ok(bus) => bus,
        Err(e) => panic!("{}: the bus does not build: {e}", f.name()),
    };
    if let Err(e) = bus.start().await {
        panic!("{}: the bus does not start: {e}", f.name());
    }
    Some(bus)
}

async fn finish<F: BackendFactory>(f: &F, ns: &str, buses: &[&EventBus]) {
    for b in buses {
        let _ = b.shutdown().await;
    }
    f.cleanup(ns).await;
}

fn counting(name: &str, pattern: &str, seen: &Seen) -> Handler {
    let seen = seen.clone();
    Handler::new(name, pattern, move |env, _ctx| {
        seen.note(env.id);
        async { Ok::<(), HandlerError>(()) }
    })
}

/// Every published event is handled, and once.
pub async fn published_once_handled_once<F: BackendFactory>(f: &F) {
    let ns = namespace("once");
    let seen = Seen::default();
    let Some(bus) = start(f, &ns, vec![counting("count", "suite.once", &seen)]).await else {
        return;
    };
    for n in 0..50 {
        bus.publish_envelope(event("suite.once", n))
            .await
            .unwrap_or_else(|e| panic!("{}: publish failed: {e}", f.name()));
    }
    let all = seen
        .wait(|s| s.events() == 50, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (events, attempts) = (seen.events(), seen.attempts());
    finish(f, &ns, &[&bus]).await;
    assert!(all, "{}: {events} of 50 events handled", f.name());
    assert_eq!(attempts, 50, "{}: an event was handled twice", f.name());
}

/// A failing handler is retried per its policy, waiting the backoff between attempts.
pub async fn retries_with_backoff<F: BackendFactory>(f: &F) {
    let ns = namespace("retry");
    let seen = Seen::default();
    let s = seen.clone();
    let flaky = Handler::new("flaky", "suite.retry", move |env, _ctx| {
        let n = s.note(env.id);
        async move {
            if n < 3 {
                Err(HandlerError::msg(format!("attempt {n} fails")))
            } else {
                Ok(())
            }
        }
    })
    .retry(RetryPolicy::attempts(3).backoff(0.1, 1.0));
    let Some(bus) = start(f, &ns, vec![flaky]).await else {
        return;
    };
    let env = event("suite.retry", 1);
    let id = env.id;
    bus.publish_envelope(env).await.expect("publish");
    let done = seen
        .wait(|s| s.attempts() >= 3, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let times = seen.times(id);
    let letters = bus.dead_letters().await.expect("dead letters");
    finish(f, &ns, &[&bus]).await;
    assert!(done, "{}: {} attempts instead of 3", f.name(), times.len());
    assert_eq!(times.len(), 3, "{}: attempts", f.name());
    // Delays of 0.1 s then 0.2 s (backoff_factor * 2^(n-1)).
    let first = times[1].duration_since(times[0]);
    let second = times[2].duration_since(times[1]);
    assert!(
        first >= Duration::from_millis(95),
        "{}: first backoff {first:?}",
        f.name()
    );
    assert!(
        second >= Duration::from_millis(190),
        "{}: second backoff {second:?}",
        f.name()
    );
    assert!(
        letters.is_empty(),
        "{}: the third attempt succeeded",
        f.name()
    );
}

/// A delayed event is not delivered before its time, and is delivered after it.
pub async fn delayed_events_are_not_early<F: BackendFactory>(f: &F) {
    let ns = namespace("delay");
    let seen = Seen::default();
    let Some(bus) = start(f, &ns, vec![counting("later", "suite.delay", &seen)]).await else {
        return;
    };
    let t0 = Instant::now();
    let env = event("suite.delay", 1);
    let id = env.id;
    bus.publish_envelope_delayed(env, Duration::from_millis(600))
        .await
        .expect("publish delayed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = seen.events();
    let arrived = seen
        .wait(|s| s.events() == 1, Duration::from_secs(20))
        .await;
    let at = seen.times(id).first().map(|t| t.duration_since(t0));
    finish(f, &ns, &[&bus]).await;
    assert_eq!(early, 0, "{}: delivered before its time", f.name());
    assert!(arrived, "{}: never delivered", f.name());
    assert!(
        at.is_some_and(|d| d >= Duration::from_millis(590)),
        "{}: delivered after {at:?}, before 600 ms",
        f.name()
    );
}

/// A handler that gives up leaves a dead letter that is listed (and paged and filtered),
/// delivered again by a retry, and removed.
pub async fn dead_letters_are_listed_retried_and_removed<F: BackendFactory>(f: &F) {
    let ns = namespace("dead");
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Seen::default();
    let (h, s) = (healed.clone(), seen.clone());
    let failing = Handler::new("fails", "suite.dead", move |env, _ctx| {
        let ok = h.load(std::sync::atomic::Ordering::SeqCst);
        if ok {
            s.note(env.id);
        }
        async move {
            if ok {
                Ok(())
            } else {
                Err(HandlerError::permanent_msg("refused"))
            }
        }
    });
    let Some(bus) = start(f, &ns, vec![failing]).await else {
        return;
    };
    for n in 0..2 {
        bus.publish_envelope(event("suite.dead", n))
            .await
            .expect("publish");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut letters = Vec::new();
    while Instant::now() < deadline {
        letters = bus.dead_letters().await.expect("dead letters");
        if letters.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = bus
        .dead_letters_page(&DeadLetterQuery::new().handler("fails").event("suite.dead"))
        .await
        .expect("a page");
    let none = bus
        .dead_letters_page(&DeadLetterQuery::new().handler("someone-else"))
        .await
        .expect("a page");
    healed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (retried, removed) = match letters.as_slice() {
        [a, b] => (
            bus.retry_dead_letter(a.id).await.map(|_| ()),
            bus.remove_dead_letter(b.id).await,
        ),
        _ => (Ok(()), Ok(false)),
    };
    let redelivered = seen
        .wait(|s| s.events() == 1, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = bus.dead_letters().await.expect("dead letters").len();
    finish(f, &ns, &[&bus]).await;
    assert_eq!(letters.len(), 2, "{}: dead letters listed", f.name());
    assert!(
        letters
            .iter()
            .all(|l| l.handler == "fails" && l.attempts == 1)
    );
    assert_eq!(page.letters.len(), 2, "{}: the page of `fails`", f.name());
    assert!(
        none.letters.is_empty(),
        "{}: the filter by handler",
        f.name()
    );
    assert!(retried.is_ok(), "{}: retry failed: {retried:?}", f.name());
    assert_eq!(removed.ok(), Some(true), "{}: remove", f.name());
    assert!(
        redelivered,
        "{}: the retried letter was not delivered",
        f.name()
    );
    assert_eq!(left, 0, "{}: letters left after retry and remove", f.name());
}

/// An envelope whose `attempt` is `u32::MAX` (a poison entry: the count came off the
/// network) is handled, or given up on and dead-lettered, and the queue drains: never a
/// panic, never an entry pending forever.
pub async fn an_attempt_count_at_its_maximum_neither_overflows_nor_sticks<F: BackendFactory>(
    f: &F,
) {
    let ns = namespace("poison");
    let seen = Seen::default();
    let failing = Handler::new("always_fails", "suite.poison.fails", |_env, _ctx| async {
        Err::<(), _>(HandlerError::msg("fails on every attempt"))
    })
    .retry(RetryPolicy::attempts(3).backoff(0.0, 0.0));
    let handlers = vec![counting("succeeds", "suite.poison.ok", &seen), failing];
    let Some(bus) = start(f, &ns, handlers).await else {
        return;
    };
    for name in ["suite.poison.ok", "suite.poison.fails"] {
        let mut e = event(name, 1);
        e.attempt = u32::MAX;
        bus.publish_envelope(e).await.expect("publish");
    }
    let handled = seen
        .wait(|s| s.events() == 1, Duration::from_secs(20))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut letters, mut pending) = (Vec::new(), None);
    while Instant::now() < deadline {
        letters = bus.dead_letters().await.expect("dead letters");
        pending = bus.health().await.pending;
        if letters.len() == 1 && pending.unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish(f, &ns, &[&bus]).await;
    assert!(handled, "{}: the poison entry was never handled", f.name());
    assert_eq!(seen.attempts(), 1, "{}: handled once", f.name());
    assert_eq!(
        letters.len(),
        1,
        "{}: the failing one is dead-lettered",
        f.name()
    );
    assert_eq!(letters[0].handler, "always_fails");
    assert_eq!(letters[0].attempts, u32::MAX);
    assert_eq!(
        pending.unwrap_or(0),
        0,
        "{}: entries left pending",
        f.name()
    );
}

/// An entry that is not an envelope becomes a dead letter and the worker goes on.
pub async fn an_invalid_entry_is_dead_lettered_and_the_worker_goes_on<F: BackendFactory>(f: &F) {
    let ns = namespace("invalid");
    let seen = Seen::default();
    let Some(bus) = start(f, &ns, vec![counting("good", "suite.good", &seen)]).await else {
        return;
    };
    if !f.inject_invalid(&ns).await {
        finish(f, &ns, &[&bus]).await;
        eprintln!(
            "{}: no broker entries to corrupt; test not applicable",
            f.name()
        );
        return;
    }
    bus.publish_envelope(event("suite.good", 1))
        .await
        .expect("publish");
    let handled = seen
        .wait(|s| s.events() == 1, Duration::from_secs(20))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut letters = Vec::new();
    while Instant::now() < deadline {
        letters = bus.dead_letters().await.expect("dead letters");
        if !letters.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish(f, &ns, &[&bus]).await;
    assert!(
        handled,
        "{}: the worker stopped at the invalid entry",
        f.name()
    );
    assert_eq!(
        letters.len(),
        1,
        "{}: the invalid entry's dead letter",
        f.name()
    );
    assert_eq!(
        letters[0].handler,
        "",
        "{}: invalid entries have no handler",
        f.name()
    );
    assert_eq!(
        letters[0].envelope.name,
        crate::backend::broker::INVALID_ENTRY_EVENT
    );
}

/// A worker shut down in the middle of a delivery leaves it to another worker.
pub async fn shutdown_leaves_unfinished_work_for_another_worker<F: BackendFactory>(f: &F) {
    if !f.shares_queue() {
        eprintln!("{}: one process only; test not applicable", f.name());
        return;
    }
    let ns = namespace("handover");
    let slow = Handler::new("work", "suite.handover", |_env, _ctx| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<(), HandlerError>(())
    });
    let Some(first) = start(f, &ns, vec![slow]).await else {
        return;
    };
    first
        .publish_envelope(event("suite.handover", 1))
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = first.shutdown().await.expect("shutdown");
    let seen = Seen::default();
    let Some(second) = start(f, &ns, vec![counting("work", "suite.handover", &seen)]).await else {
        return;
    };
    let handled = seen
        .wait(|s| s.events() == 1, Duration::from_secs(30))
        .await;
    finish(f, &ns, &[&second]).await;
    assert_eq!(
        report.unfinished.len(),
        1,
        "{}: the first worker's unfinished delivery",
        f.name()
    );
    assert!(
        handled,
        "{}: the second worker never got the unfinished event",
        f.name()
    );
}

/// The backend reports itself reachable.
pub async fn health_reports_reachable<F: BackendFactory>(f: &F) {
    let ns = namespace("health");
    let Some(bus) = start(
        f,
        &ns,
        vec![counting("h", "suite.health", &Seen::default())],
    )
    .await
    else {
        return;
    };
    let health = bus.health().await;
    finish(f, &ns, &[&bus]).await;
    assert!(health.reachable, "{}: {health:?}", f.name());
}
