//! The bus end to end, with handlers registered by the macros.
#![allow(clippy::unwrap_used)] // test code: a poisoned lock or a failed call should fail the test

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use eventflow::prelude::*;
use eventflow::testing::Recorder;
use eventflow::{EventError, HandlerErrorKind, OutcomeStatus, PublishError};
use eventflow_tests::Log;
use tokio::sync::Semaphore;

#[derive(Event, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[event(name = "user.created")]
struct UserCreated {
    id: u64,
    email: String,
}

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
struct UserDeleted {
    id: u64,
}

// ---- every accepted signature -------------------------------------------------------

static SIGS: LazyLock<Log> = LazyLock::new(Log::default);

#[event_handler("user.created", name = "by_value")]
async fn by_value(event: UserCreated) -> Result<(), HandlerError> {
    SIGS.push(format!("by_value {}", event.email));
    Ok(())
}

#[event_handler("user.created", name = "by_ref_with_ctx")]
async fn by_ref_with_ctx(ctx: &HandlerContext, event: &UserCreated) -> eventflow::Result<()> {
    SIGS.push(format!("by_ref {} attempt {}", event.id, ctx.attempt()));
    Ok(())
}

#[event_handler("user.*", name = "envelope_ref")]
async fn envelope_ref(event: &Envelope) {
    SIGS.push(format!("envelope_ref {}", event.name));
}

#[event_handler("user.created", name = "envelope_owned")]
async fn envelope_owned(event: Envelope, _ctx: HandlerContext) -> Result<(), std::io::Error> {
    SIGS.push(format!(
        "envelope_owned {}",
        event.payload_json()?["email"].as_str().unwrap_or("?")
    ));
    Ok(())
}

#[event_handler("user.created", name = "plain_fn")]
fn plain_fn(event: UserCreated) -> Result<(), HandlerError> {
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    SIGS.push(format!(
        "plain_fn {} on_async_worker={}",
        event.id,
        thread.starts_with("tokio-runtime-worker")
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signature_receives_the_event() {
    let bus = EventBus::builder()
        .only([
            "by_value",
            "by_ref_with_ctx",
            "envelope_ref",
            "envelope_owned",
            "plain_fn",
        ])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch(UserCreated {
            id: 7,
            email: "a@example.com".into(),
        })
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.outcomes.len(), 5);
    let mut got = SIGS.entries();
    got.sort();
    assert_eq!(
        got,
        [
            "by_ref 7 attempt 1",
            "by_value a@example.com",
            "envelope_owned a@example.com",
            "envelope_ref user.created",
            "plain_fn 7 on_async_worker=false",
        ]
    );
    // `user.*` also sees other user events; the typed handlers do not match them.
    assert_eq!(bus.handlers_for("user.user_deleted"), ["envelope_ref"]);
    assert_eq!(<UserDeleted as eventflow::Event>::NAME, "user_deleted");
}

// ---- publish, no handler, names ---------------------------------------------------------

static GATE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(0));

#[event_handler("slow.job", name = "slow_job")]
async fn slow_job(_e: &Envelope) {
    let _ = GATE.acquire().await.map(|p| p.forget());
}

#[tokio::test]
async fn publish_returns_once_accepted_and_handlers_run_later() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["slow_job"])
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    bus.publish_raw("slow.job", serde_json::json!({}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        rec.outcomes().is_empty(),
        "handler finished before it was released"
    );
    assert_eq!(bus.in_flight(), 1);
    GATE.add_permits(1);
    let outcomes = rec.wait_for_outcomes(1, Duration::from_secs(5)).await;
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].succeeded());
}

#[tokio::test]
async fn an_event_no_handler_matches_is_reported() {
    let bus = EventBus::builder()
        .only(["slow_job"])
        .build()
        .await
        .unwrap();
    let err = bus
        .publish_raw("nobody.listens", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EventError::NoHandler(n) if n.name == "nobody.listens"),
        "{err}"
    );
    let err = bus.dispatch(UserDeleted { id: 1 }).await.unwrap_err();
    assert!(matches!(err, EventError::NoHandler(_)));

    let lenient = EventBus::builder()
        .only(["slow_job"])
        .allow_unhandled(true)
        .build()
        .await
        .unwrap();
    lenient
        .publish_raw("nobody.listens", serde_json::json!({}))
        .await
        .unwrap();
    let report = lenient.dispatch(UserDeleted { id: 1 }).await.unwrap();
    assert!(report.outcomes.is_empty());
}

#[tokio::test]
async fn invalid_names_are_rejected_at_publish() {
    let bus = EventBus::builder()
        .allow_unhandled(true)
        .without_registry()
        .build()
        .await
        .unwrap();
    for bad in ["", "Bad.Name", "user..created", "user.*"] {
        let err = bus
            .publish_raw(bad, serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EventError::Publish(PublishError::InvalidName { .. })),
            "{bad:?}: {err}"
        );
    }
}

// ---- payloads that do not fit --------------------------------------------------------------

static TYPED_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler(
    "user.created",
    name = "strict_typed",
    retry(max_attempts = 3, backoff_factor = 0.0)
)]
async fn strict_typed(_e: UserCreated) -> Result<(), HandlerError> {
    TYPED_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_payload_that_does_not_deserialize_goes_to_dead_letters_without_a_call() {
    let bus = EventBus::builder()
        .only(["strict_typed"])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("user.created", serde_json::json!({"id": "seven"}))
        .await
        .unwrap();
    let outcome = report.outcome("strict_typed").unwrap();
    assert_eq!(outcome.attempts, 1, "payload errors are not retried");
    let err = outcome.error().unwrap();
    assert_eq!(err.kind(), HandlerErrorKind::Payload);
    let text = err.to_string();
    assert!(
        text.contains("user.created") && text.contains("UserCreated"),
        "{text}"
    );
    assert_eq!(TYPED_CALLS.load(Ordering::SeqCst), 0);
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].handler, "strict_typed");
    assert_eq!(dead[0].error_kind, HandlerErrorKind::Payload);
    assert_eq!(
        dead[0].envelope.payload_json().unwrap(),
        serde_json::json!({"id": "seven"})
    );

    // A well-formed raw payload is deserialized and delivered.
    let ok = bus
        .dispatch_raw("user.created", serde_json::json!({"id": 1, "email": "x@y"}))
        .await
        .unwrap();
    assert!(ok.is_success());
    assert_eq!(TYPED_CALLS.load(Ordering::SeqCst), 1);
}

// ---- envelope, correlation, causation, headers -----------------------------------------------

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.placed")]
struct OrderPlaced {
    id: u64,
}

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.shipped")]
struct OrderShipped {
    id: u64,
}

static CHAIN: LazyLock<std::sync::Mutex<Vec<Envelope>>> = LazyLock::new(Default::default);

#[event_handler("order.placed", name = "ship_it")]
async fn ship_it(event: OrderPlaced, ctx: &HandlerContext) -> eventflow::Result<()> {
    CHAIN.lock().unwrap().push(ctx.envelope().clone());
    ctx.publish(OrderShipped { id: event.id }).await
}

#[event_handler("order.shipped", name = "shipped")]
async fn shipped(event: &Envelope) {
    CHAIN.lock().unwrap().push(event.clone());
}

#[tokio::test]
async fn follow_up_events_carry_correlation_causation_and_headers() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["ship_it", "shipped"])
        .header("tenant", "acme")
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    let mut env = Envelope::new(OrderPlaced { id: 9 });
    env.headers.insert("request-id", "req-1");
    env.priority = 3;
    let parent_id = env.id;
    bus.publish_envelope(env).await.unwrap();
    rec.wait_for_outcomes(2, Duration::from_secs(5)).await;
    let chain = CHAIN.lock().unwrap().clone();
    assert_eq!(chain.len(), 2);
    let (parent, child) = (&chain[0], &chain[1]);
    assert_eq!(parent.id, parent_id);
    assert_eq!(parent.name, "order.placed");
    assert_eq!(parent.attempt, 1);
    assert_eq!(parent.priority, 3);
    assert_eq!(parent.correlation_id, parent.id);
    assert_eq!(parent.causation_id, None);
    assert_eq!(parent.headers.get("tenant"), Some("acme"));
    assert_eq!(child.name, "order.shipped");
    assert_eq!(child.correlation_id, parent.correlation_id);
    assert_eq!(child.causation_id, Some(parent.id));
    assert_eq!(child.headers.get("request-id"), Some("req-1"));
    assert_eq!(child.headers.get("tenant"), Some("acme"));
    assert!(child.timestamp >= parent.timestamp);
    assert_eq!(rec.published_names(), ["order.placed", "order.shipped"]);
}

// ---- retries -------------------------------------------------------------------------------------

static FLAKY_TIMES: LazyLock<std::sync::Mutex<Vec<tokio::time::Instant>>> =
    LazyLock::new(Default::default);

#[event_handler(
    "payment.charge",
    name = "flaky_gateway",
    retry(max_attempts = 3, backoff_factor = 0.1, max_backoff = 2.0, retry_on = [std::io::Error])
)]
async fn flaky_gateway(_e: &Envelope, ctx: &HandlerContext) -> Result<(), HandlerError> {
    FLAKY_TIMES
        .lock()
        .unwrap()
        .push(tokio::time::Instant::now());
    if ctx.attempt() < 3 {
        return Err(std::io::Error::other("gateway timeout").into());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn retries_wait_backoff_factor_times_two_to_the_n_minus_one() {
    let bus = EventBus::builder()
        .only(["flaky_gateway"])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("payment.charge", serde_json::json!({}))
        .await
        .unwrap();
    let outcome = report.outcome("flaky_gateway").unwrap();
    assert!(outcome.succeeded());
    assert_eq!(outcome.attempts, 3);
    let times = FLAKY_TIMES.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    assert_eq!(times[1] - times[0], Duration::from_millis(100));
    assert_eq!(times[2] - times[1], Duration::from_millis(200));
}

static PICKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, thiserror::Error)]
#[error("card declined")]
struct Declined;

#[event_handler("payment.refund", name = "picky", retry(max_attempts = 5, backoff_factor = 0.0, retry_on = [std::io::Error]))]
async fn picky(_e: &Envelope) -> Result<(), Declined> {
    PICKY_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(Declined)
}

static PERMANENT_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler(
    "payment.void",
    name = "permanent",
    retry(max_attempts = 5, backoff_factor = 0.0)
)]
async fn permanent(_e: &Envelope) -> Result<(), HandlerError> {
    PERMANENT_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::permanent_msg("account closed"))
}

#[tokio::test]
async fn only_listed_error_types_retry_and_permanent_errors_never_do() {
    let bus = EventBus::builder()
        .only(["picky", "permanent"])
        .build()
        .await
        .unwrap();
    let r = bus
        .dispatch_raw("payment.refund", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r.outcome("picky").unwrap().attempts, 1);
    assert_eq!(PICKY_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        r.outcome("picky").unwrap().error().unwrap().to_string(),
        "card declined"
    );
    let r = bus
        .dispatch_raw("payment.void", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(r.outcome("permanent").unwrap().attempts, 1);
    assert_eq!(PERMANENT_CALLS.load(Ordering::SeqCst), 1);
    assert_eq!(
        r.outcome("permanent").unwrap().error().unwrap().kind(),
        HandlerErrorKind::Permanent
    );
}

// ---- panics and timeouts -------------------------------------------------------------------------

static SURVIVOR: AtomicU32 = AtomicU32::new(0);

#[event_handler(
    "crash.test",
    name = "panicker",
    retry(max_attempts = 2, backoff_factor = 0.0)
)]
async fn panicker(_e: &Envelope) {
    panic!("handler exploded");
}

#[event_handler("crash.test", name = "survivor")]
async fn survivor(_e: &Envelope) {
    SURVIVOR.fetch_add(1, Ordering::SeqCst);
}

#[event_handler("crash.blocking", name = "blocking_panicker", executor = ThreadPool)]
fn blocking_panicker(_e: Envelope) {
    panic!("blocking handler exploded");
}

#[tokio::test]
async fn a_panic_is_a_failure_and_the_rest_keeps_running() {
    let bus = EventBus::builder()
        .only(["panicker", "survivor", "blocking_panicker"])
        .build()
        .await
        .unwrap();
    for round in 1..=2 {
        let r = bus
            .dispatch_raw("crash.test", serde_json::json!({}))
            .await
            .unwrap();
        let p = r.outcome("panicker").unwrap();
        assert_eq!(p.attempts, 2, "panics retry like failures");
        assert_eq!(p.error().unwrap().kind(), HandlerErrorKind::Panicked);
        assert!(p.error().unwrap().to_string().contains("handler exploded"));
        assert!(r.outcome("survivor").unwrap().succeeded());
        assert_eq!(SURVIVOR.load(Ordering::SeqCst), round);
    }
    let r = bus
        .dispatch_raw("crash.blocking", serde_json::json!({}))
        .await
        .unwrap();
    let err = r.outcome("blocking_panicker").unwrap().error().unwrap();
    assert_eq!(err.kind(), HandlerErrorKind::Panicked);
    assert!(err.to_string().contains("blocking handler exploded"));
    assert_eq!(bus.dead_letters().await.unwrap().len(), 3);
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct DropFlag;
impl Drop for DropFlag {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

#[event_handler(
    "slow.hang",
    name = "hangs",
    timeout = "50ms",
    retry(max_attempts = 2, backoff_factor = 0.0)
)]
async fn hangs(_e: &Envelope) {
    let _flag = DropFlag;
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test]
async fn a_timeout_cancels_the_attempt_and_counts_as_a_failure() {
    let bus = EventBus::builder().only(["hangs"]).build().await.unwrap();
    let started = std::time::Instant::now();
    let r = bus
        .dispatch_raw("slow.hang", serde_json::json!({}))
        .await
        .unwrap();
    let o = r.outcome("hangs").unwrap();
    assert_eq!(o.attempts, 2);
    assert_eq!(o.error().unwrap().kind(), HandlerErrorKind::TimedOut);
    assert!(o.error().unwrap().is::<eventflow::TimeoutError>());
    assert_eq!(
        DROPPED.load(Ordering::SeqCst),
        2,
        "each timed-out attempt's future was dropped"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

// ---- dead letters --------------------------------------------------------------------------------

static FIXED: AtomicBool = AtomicBool::new(false);

#[event_handler(
    "invoice.send",
    name = "send_invoice",
    retry(max_attempts = 2, backoff_factor = 0.0)
)]
async fn send_invoice(_e: &Envelope) -> Result<(), HandlerError> {
    if FIXED.load(Ordering::SeqCst) {
        Ok(())
    } else {
        Err(HandlerError::msg("smtp down"))
    }
}

#[tokio::test]
async fn dead_letters_can_be_listed_retried_and_removed() {
    let bus = EventBus::builder()
        .only(["send_invoice"])
        .build()
        .await
        .unwrap();
    let r = bus
        .dispatch_raw("invoice.send", serde_json::json!({"n": 1}))
        .await
        .unwrap();
    let OutcomeStatus::DeadLettered { dead_letter_id, .. } =
        &r.outcome("send_invoice").unwrap().status
    else {
        panic!("expected a dead letter: {r:?}");
    };
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.id, *dead_letter_id);
    assert_eq!(
        (d.handler.as_str(), d.error.as_str(), d.attempts),
        ("send_invoice", "smtp down", 2)
    );
    assert_eq!(d.envelope.id, r.event_id);
    assert!(d.failed_at >= d.first_failed_at);
    assert!(d.first_failed_at >= d.envelope.timestamp);
    let json = serde_json::to_value(d).unwrap();
    assert_eq!(json["envelope"]["payload"], serde_json::json!({"n": 1}));

    // Retrying while still broken puts it back under a new id.
    let again = bus.retry_dead_letter(d.id).await.unwrap();
    assert!(!again.outcome().unwrap().succeeded());
    let dead = bus.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_ne!(dead[0].id, d.id);

    FIXED.store(true, Ordering::SeqCst);
    let fixed = bus.retry_dead_letter(dead[0].id).await.unwrap();
    assert!(fixed.outcome().unwrap().succeeded());
    assert!(bus.dead_letters().await.unwrap().is_empty());
    assert!(matches!(
        bus.retry_dead_letter(d.id).await,
        Err(EventError::DeadLetterNotFound(_))
    ));

    FIXED.store(false, Ordering::SeqCst);
    bus.dispatch_raw("invoice.send", serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let id = bus.dead_letters().await.unwrap()[0].id;
    assert!(bus.remove_dead_letter(id).await.unwrap());
    assert!(!bus.remove_dead_letter(id).await.unwrap());
    assert!(bus.dead_letters().await.unwrap().is_empty());
}

// ---- concurrency and priority -------------------------------------------------------------------

static ORDER: LazyLock<Log> = LazyLock::new(Log::default);
static ORDER_GATE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(0));

#[event_handler("work.item", name = "one_at_a_time", executor = Tokio, concurrency = 1)]
async fn one_at_a_time(e: &Envelope) -> Result<(), HandlerError> {
    let label = e.payload_json()?["label"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    if label == "first" {
        let _ = ORDER_GATE.acquire().await.map(|p| p.forget());
    }
    ORDER.push(label);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_deliveries_run_by_priority_then_in_publish_order() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["one_at_a_time"])
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    let publish = |label: &str, priority: i32| {
        let bus = bus.clone();
        let label = label.to_owned();
        async move {
            let mut env = eventflow::Envelope::with_payload(
                "work.item".into(),
                eventflow::Payload::json(serde_json::json!({ "label": label })),
            );
            env.priority = priority;
            bus.publish_envelope(env).await.unwrap();
        }
    };
    publish("first", 0).await;
    while bus.in_flight() < 1 {
        tokio::task::yield_now().await;
    }
    for (label, prio) in [
        ("low-a", 1),
        ("mid-a", 5),
        ("mid-b", 5),
        ("high", 10),
        ("low-b", 1),
    ] {
        publish(label, prio).await;
    }
    while bus.waiting("one_at_a_time") < 5 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ORDER_GATE.add_permits(1);
    rec.wait_for_outcomes(6, Duration::from_secs(5)).await;
    assert_eq!(
        ORDER.entries(),
        ["first", "high", "mid-a", "mid-b", "low-a", "low-b"]
    );
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[event_handler("work.bounded", name = "bounded", executor = Tokio, concurrency = 3)]
async fn bounded(_e: &Envelope) {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_concurrency_deliveries_run_at_once() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["bounded"])
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    for _ in 0..30 {
        bus.publish_raw("work.bounded", serde_json::json!({}))
            .await
            .unwrap();
    }
    let outcomes = rec.wait_for_outcomes(30, Duration::from_secs(10)).await;
    assert_eq!(outcomes.len(), 30);
    assert_eq!(PEAK.load(Ordering::SeqCst), 3);
}

// ---- executors -------------------------------------------------------------------------------------

static THREADS: LazyLock<Log> = LazyLock::new(Log::default);

#[event_handler(
    "report.build",
    name = "write_report",
    executor = ThreadPool,
    executor_config(max_workers = 2, max_tasks_per_child = 2, thread_name_prefix = "report-")
)]
fn write_report(_e: Envelope) -> Result<(), HandlerError> {
    THREADS.push(std::thread::current().name().unwrap_or("unnamed"));
    Ok(())
}

#[tokio::test]
async fn thread_pool_handlers_run_on_named_pool_threads_replaced_after_max_tasks() {
    let bus = EventBus::builder()
        .only(["write_report"])
        .build()
        .await
        .unwrap();
    for _ in 0..6 {
        assert!(
            bus.dispatch_raw("report.build", serde_json::json!({}))
                .await
                .unwrap()
                .is_success()
        );
    }
    let names = THREADS.entries();
    assert_eq!(names.len(), 6);
    assert!(names.iter().all(|n| n.starts_with("report-")), "{names:?}");
    let mut per_thread = std::collections::BTreeMap::<&str, usize>::new();
    for n in &names {
        *per_thread.entry(n.as_str()).or_default() += 1;
    }
    assert!(
        per_thread.values().all(|&n| n <= 2),
        "a thread ran more than max_tasks_per_child: {per_thread:?}"
    );
    assert!(
        per_thread.len() >= 3,
        "threads were replaced: {per_thread:?}"
    );
}

static BARRIER: LazyLock<tokio::sync::Barrier> = LazyLock::new(|| tokio::sync::Barrier::new(2));

#[event_handler("meet.up", name = "meet_a", executor = Tokio)]
async fn meet_a(_e: &Envelope) {
    BARRIER.wait().await;
}

#[event_handler("meet.up", name = "meet_b", executor = Tokio)]
async fn meet_b(_e: &Envelope) {
    BARRIER.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_handlers_of_one_event_run_concurrently() {
    let bus = EventBus::builder()
        .only(["meet_a", "meet_b"])
        .build()
        .await
        .unwrap();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        bus.dispatch_raw("meet.up", serde_json::json!({})),
    )
    .await
    .expect("the two handlers must run at the same time to pass the barrier")
    .unwrap();
    assert!(r.is_success());
}

static PRIO: LazyLock<Log> = LazyLock::new(Log::default);

#[event_handler("prio.test", name = "prio_low")]
async fn prio_low(_e: &Envelope) {
    PRIO.push("low");
}

#[event_handler("prio.test", name = "prio_high", priority = 10)]
async fn prio_high(_e: &Envelope) {
    PRIO.push("high");
}

#[tokio::test]
async fn handler_priority_orders_the_handlers_of_one_event() {
    let bus = EventBus::builder()
        .only(["prio_low", "prio_high"])
        .build()
        .await
        .unwrap();
    bus.dispatch_raw("prio.test", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(PRIO.entries(), ["high", "low"]);
    assert_eq!(bus.handler_names(), ["prio_high", "prio_low"]);
}

// ---- shutdown ----------------------------------------------------------------------------------------

static FINISHED: AtomicUsize = AtomicUsize::new(0);

#[event_handler("drain.me", name = "drain_me")]
async fn drain_me(_e: &Envelope) {
    tokio::time::sleep(Duration::from_millis(100)).await;
    FINISHED.fetch_add(1, Ordering::SeqCst);
}

#[event_handler("stuck.forever", name = "stuck")]
async fn stuck(_e: &Envelope) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_work_then_refuses_new_events() {
    let bus = EventBus::builder()
        .only(["drain_me"])
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        bus.publish_raw("drain.me", serde_json::json!({}))
            .await
            .unwrap();
    }
    let report = bus.shutdown().await.unwrap();
    assert!(report.is_clean());
    assert_eq!(FINISHED.load(Ordering::SeqCst), 3);
    let err = bus
        .publish_raw("drain.me", serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, EventError::Publish(PublishError::ShutDown { .. })),
        "{err}"
    );
    assert!(
        bus.shutdown().await.unwrap().is_clean(),
        "a second shutdown returns at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shutdown_returns_at_once_while_a_dispatch_still_runs() {
    let bus = EventBus::builder()
        .without_registry()
        .shutdown_timeout(Duration::from_secs(60))
        .handler(eventflow::Handler::new("hangs", "hang.now", |_e, _ctx| {
            std::future::pending::<Result<(), eventflow::HandlerError>>()
        }))
        .build()
        .await
        .unwrap();
    let b = bus.clone();
    let dispatch = tokio::spawn(async move {
        let _ = b.dispatch_raw("hang.now", serde_json::json!({})).await;
    });
    while bus.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // The first shutdown waits (up to a minute) for the dispatch, which its caller owns.
    let b = bus.clone();
    let first = tokio::spawn(async move { b.shutdown().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = tokio::time::timeout(Duration::from_secs(10), bus.shutdown()).await;
    assert!(
        matches!(second, Ok(Ok(ref r)) if r.is_clean()),
        "the second shutdown waited for the first: {second:?}"
    );
    first.abort();
    dispatch.abort();
}

#[tokio::test]
async fn shutdown_reports_and_cancels_what_did_not_finish_in_time() {
    let bus = EventBus::builder()
        .only(["stuck"])
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let env = eventflow::Envelope::with_payload(
        "stuck.forever".into(),
        eventflow::Payload::json(serde_json::json!({})),
    );
    let id = env.id;
    bus.publish_envelope(env).await.unwrap();
    while bus.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let report = bus.shutdown().await.unwrap();
    assert_eq!(report.unfinished.len(), 1);
    assert_eq!(report.unfinished[0].event_id, id);
    assert_eq!(report.unfinished[0].event, "stuck.forever");
    assert_eq!(bus.in_flight(), 0, "the unfinished delivery was cancelled");
}

// ---- handlers added at run time and validation ------------------------------------------------------

#[tokio::test]
async fn closures_can_be_added_as_handlers() {
    let seen = Log::default();
    let s2 = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::typed(
            "closure",
            "user.created",
            move |e: UserCreated, _ctx| {
                let s2 = s2.clone();
                async move {
                    s2.push(e.email);
                    Ok(())
                }
            },
        ))
        .handler(Handler::blocking(
            "blocking_closure",
            "user.**",
            |env, _ctx| {
                assert!(env.name.starts_with("user"));
                Ok(())
            },
        ))
        .build()
        .await
        .unwrap();
    let r = bus
        .dispatch(UserCreated {
            id: 1,
            email: "c@d".into(),
        })
        .await
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.outcomes.len(), 2);
    assert_eq!(seen.entries(), ["c@d"]);
}

#[tokio::test]
async fn build_reports_every_problem_at_once() {
    let ok = |_env: Envelope, _ctx: HandlerContext| async { Ok::<(), HandlerError>(()) };
    let err = EventBus::builder()
        .only(["by_value", "no_such_handler"])
        .handler(Handler::new("by_value", "user.created", ok))
        .handler(Handler::new("bad_pattern", "user..x", ok))
        .handler(Handler::new("no_attempts", "a.b", ok).retry(RetryPolicy::attempts(0)))
        .handler(
            Handler::blocking("blocking_on_tokio", "a.b", |_, _| Ok(()))
                .executor(Executor::Tokio, Default::default()),
        )
        .build()
        .await
        .expect_err("build must fail");
    let EventError::Validation(v) = err else {
        panic!("expected a validation error, got {err}")
    };
    let text = v.to_string();
    assert_eq!(v.problems.len(), 5, "{text}");
    for needle in [
        "no_such_handler",
        "two handlers are named `by_value`",
        "user..x",
        "max_attempts",
        "Tokio",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn the_registry_lists_what_the_macros_registered() {
    let reg = eventflow::Registry::global();
    assert!(reg.validate().is_ok(), "{:?}", reg.validate());
    let h = reg.handler("flaky_gateway").unwrap();
    assert_eq!(h.pattern, "payment.charge");
    assert_eq!(h.options.retry.max_attempts, 3);
    assert_eq!(h.options.retry.backoff_factor, 0.1);
    assert_eq!(h.options.retry.max_backoff, 2.0);
    assert!(h.options.retry.retry_on.is_some());
    assert_eq!(
        reg.handler("hangs").unwrap().options.timeout,
        Some(Duration::from_millis(50))
    );
    let wr = reg.handler("write_report").unwrap();
    assert_eq!(wr.options.executor, Executor::ThreadPool);
    assert_eq!(wr.options.executor_config.max_workers, Some(2));
    assert_eq!(
        wr.options.executor_config.thread_name_prefix.as_deref(),
        Some("report-")
    );
    assert_eq!(
        reg.event("user.created").unwrap().type_name,
        "bus::UserCreated"
    );
    assert_eq!(
        reg.event("user_deleted").unwrap().type_name,
        "bus::UserDeleted"
    );
    let text = reg.describe();
    assert!(
        text.contains("flaky_gateway") && text.contains("user.created"),
        "{text}"
    );
}

// ---- delayed publish (memory backend) ------------------------------------------------------------

static DELAYED_AT: LazyLock<std::sync::Mutex<Vec<tokio::time::Instant>>> =
    LazyLock::new(Default::default);

#[event_handler("reminder.due", name = "reminder")]
async fn reminder(_e: &Envelope) {
    DELAYED_AT.lock().unwrap().push(tokio::time::Instant::now());
}

#[tokio::test(start_paused = true)]
async fn delayed_events_arrive_not_before_their_time() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["reminder"])
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    let published = tokio::time::Instant::now();
    let env = eventflow::Envelope::with_payload(
        "reminder.due".into(),
        eventflow::Payload::json(serde_json::json!({})),
    );
    bus.publish_envelope_delayed(env, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(DELAYED_AT.lock().unwrap().is_empty(), "delivered early");
    rec.wait_for_outcomes(1, Duration::from_secs(120)).await;
    let at = DELAYED_AT.lock().unwrap().clone();
    assert_eq!(at.len(), 1);
    assert!(at[0] - published >= Duration::from_secs(60));
    let err = bus.publish_envelope_delayed(
        eventflow::Envelope::with_payload(
            "nobody.listens".into(),
            eventflow::Payload::json(serde_json::json!({})),
        ),
        Duration::from_secs(1),
    );
    assert!(matches!(err.await, Err(EventError::NoHandler(_))));
}

// ---- filters ------------------------------------------------------------------------------------------

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "order.created")]
struct OrderCreated {
    total_cents: u64,
}

fn big_orders(order: &OrderCreated) -> bool {
    order.total_cents >= 10_000
}

fn not_from_tests(env: &Envelope) -> bool {
    env.headers.get("source") != Some("test")
}

static BIG: LazyLock<Log> = LazyLock::new(Log::default);

#[event_handler("order.created", name = "vip_desk", filter = big_orders)]
async fn vip_desk(order: OrderCreated) {
    BIG.push(order.total_cents.to_string());
}

#[event_handler("order.*", name = "real_orders_only", filter = not_from_tests)]
async fn real_orders_only(_env: &Envelope) {}

#[tokio::test]
async fn filtered_events_are_not_delivered_and_count_as_filtered() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .only(["vip_desk", "real_orders_only"])
        .recorder(&rec)
        .build()
        .await
        .unwrap();
    let small = bus
        .dispatch(OrderCreated { total_cents: 500 })
        .await
        .unwrap();
    assert!(small.is_success(), "filtered is not failed");
    assert!(small.outcome("vip_desk").unwrap().is_filtered());
    assert_eq!(small.failures().count(), 0);
    let big = bus
        .dispatch(OrderCreated {
            total_cents: 25_000,
        })
        .await
        .unwrap();
    assert!(big.outcome("vip_desk").unwrap().succeeded());
    assert_eq!(BIG.entries(), ["25000"]);
    let from_test = bus
        .dispatch_envelope(
            Envelope::new(OrderCreated { total_cents: 1 }).with_header("source", "test"),
        )
        .await;
    assert!(
        from_test
            .unwrap()
            .outcome("real_orders_only")
            .unwrap()
            .is_filtered()
    );
    let filtered = rec.outcomes().iter().filter(|o| o.filtered).count();
    assert_eq!(filtered, 3, "{:?}", rec.outcomes());
    assert!(bus.dead_letters().await.unwrap().is_empty());

    // The same for a handler added at run time.
    let closure = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("only_even", "num.*", |_env, _ctx| async { Ok(()) }).filter(|env| {
                env.payload_json()
                    .ok()
                    .and_then(|v| v["n"].as_u64())
                    .is_some_and(|n| n % 2 == 0)
            }),
        )
        .build()
        .await
        .unwrap();
    let odd = closure
        .dispatch_raw("num.seen", serde_json::json!({"n": 3}))
        .await
        .unwrap();
    assert!(odd.outcomes[0].is_filtered());
    let even = closure
        .dispatch_raw("num.seen", serde_json::json!({"n": 4}))
        .await
        .unwrap();
    assert!(even.outcomes[0].succeeded());
}

// ---- metrics snapshot ----------------------------------------------------------------------------------

#[tokio::test]
async fn the_metrics_snapshot_counts_what_happened_per_handler() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("twice_flaky", "m.*", move |_env, _ctx| {
                let c = c.clone();
                async move {
                    // Attempts 1 and 2 of the first event fail, the third succeeds; the
                    // second event succeeds at once.
                    if c.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(HandlerError::msg("flaky"))
                    } else {
                        Ok(())
                    }
                }
            })
            .retry(RetryPolicy::attempts(3).backoff(0.0, 0.0)),
        )
        .handler(Handler::new("always_fails", "m.*", |_env, _ctx| async {
            Err(HandlerError::permanent_msg("no"))
        }))
        .handler(
            Handler::new("odd_only", "m.*", |_env, _ctx| async { Ok(()) })
                .filter(|env| env.name == "m.odd"),
        )
        .build()
        .await
        .unwrap();
    bus.dispatch_raw("m.even", serde_json::json!({}))
        .await
        .unwrap();
    bus.dispatch_raw("m.odd", serde_json::json!({}))
        .await
        .unwrap();
    let m = bus.metrics();
    assert_eq!(m.published, 2);
    assert_eq!(m.in_flight, 0);
    let flaky = m.handler("twice_flaky").unwrap();
    assert_eq!(
        (
            flaky.delivered,
            flaky.succeeded,
            flaky.failed_attempts,
            flaky.retried,
            flaky.dead_lettered
        ),
        (2, 2, 2, 2, 0)
    );
    assert_eq!(flaky.success_rate(), 1.0);
    let fails = m.handler("always_fails").unwrap();
    assert_eq!(
        (fails.delivered, fails.succeeded, fails.dead_lettered),
        (2, 0, 2)
    );
    assert_eq!(fails.success_rate(), 0.0);
    let odd = m.handler("odd_only").unwrap();
    assert_eq!((odd.delivered, odd.filtered, odd.succeeded), (1, 1, 1));
    // 3 succeeded, 2 dead-lettered across handlers.
    assert!(
        (m.success_rate() - 0.6).abs() < 1e-9,
        "{}",
        m.success_rate()
    );
}

// ---- health -------------------------------------------------------------------------------------------

/// A backend whose health check is scripted, to drive the checker's verdicts.
struct ScriptedBackend {
    inner: eventflow::MemoryBackend,
    reachable: bool,
    hang: bool,
    dead_letters: u64,
}

impl eventflow::Backend for ScriptedBackend {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn start(
        &self,
        sink: Arc<dyn eventflow::DeliverySink>,
    ) -> eventflow::BoxFuture<'_, Result<(), eventflow::ConnectionError>> {
        self.inner.start(sink)
    }
    fn publish(&self, e: Envelope) -> eventflow::BoxFuture<'_, Result<(), PublishError>> {
        self.inner.publish(e)
    }
    fn publish_delayed(
        &self,
        e: Envelope,
        d: Duration,
    ) -> eventflow::BoxFuture<'_, Result<(), PublishError>> {
        self.inner.publish_delayed(e, d)
    }
    fn stop(&self) -> eventflow::BoxFuture<'_, ()> {
        self.inner.stop()
    }
    fn dead_letters(&self) -> Arc<dyn eventflow::DeadLetterStore> {
        self.inner.dead_letters()
    }
    fn health(&self) -> eventflow::BoxFuture<'_, eventflow::BackendHealth> {
        let (reachable, hang, dead) = (self.reachable, self.hang, self.dead_letters);
        Box::pin(async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let health = eventflow::BackendHealth::new(reachable).with_dead_letters(Some(dead));
            if reachable {
                health
            } else {
                health.with_detail("connection refused")
            }
        })
    }
}

async fn scripted_bus(reachable: bool, hang: bool, dead_letters: u64) -> EventBus {
    EventBus::builder()
        .without_registry()
        .backend(ScriptedBackend {
            inner: eventflow::MemoryBackend::new(),
            reachable,
            hang,
            dead_letters,
        })
        .handler(Handler::new("ok", "h.ok", |_env, _ctx| async { Ok(()) }))
        .handler(Handler::new("broken", "h.bad", |_env, _ctx| async {
            Err(HandlerError::permanent_msg("no"))
        }))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_health_checker_reports_healthy_degraded_and_unhealthy_with_reasons() {
    use eventflow::{HealthChecker, HealthStatus};

    let bus = scripted_bus(true, false, 0).await;
    let checker = HealthChecker::new(&bus)
        .failure_rate_threshold(0.5, 4)
        .max_dead_letters(10);
    for _ in 0..5 {
        bus.dispatch_raw("h.ok", serde_json::json!({}))
            .await
            .unwrap();
    }
    assert_eq!(checker.check().await.status, HealthStatus::Healthy);
    for _ in 0..4 {
        bus.dispatch_raw("h.bad", serde_json::json!({}))
            .await
            .unwrap();
    }
    let report = checker.check().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(
        report.reasons[0].contains("`broken` failed 4 of 4"),
        "{:?}",
        report.reasons
    );
    // The rate is over the window since the previous check: nothing new, healthy again.
    assert_eq!(checker.check().await.status, HealthStatus::Healthy);
    assert_eq!(checker.latest().unwrap().status, HealthStatus::Healthy);

    let full = scripted_bus(true, false, 11).await;
    let report = HealthChecker::new(&full).max_dead_letters(10).check().await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert!(
        report.reasons[0].contains("dead letters: 11"),
        "{:?}",
        report.reasons
    );

    let down = scripted_bus(false, false, 0).await;
    let report = HealthChecker::new(&down).check().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(
        report.reasons[0].contains("connection refused"),
        "{:?}",
        report.reasons
    );

    let hung = scripted_bus(true, true, 0).await;
    let checker = HealthChecker::new(&hung).timeout(Duration::from_millis(50));
    let report = checker.check().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(
        report.reasons[0].contains("longer than"),
        "{:?}",
        report.reasons
    );

    // Periodic checks fill `latest`.
    let periodic = HealthChecker::new(&down).check_interval(Duration::from_millis(10));
    let handle = periodic.start();
    wait_for(|| periodic.latest().is_some()).await;
    assert_eq!(periodic.latest().unwrap().status, HealthStatus::Unhealthy);
    handle.stop();
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached");
}

// ---- timers ----------------------------------------------------------------------------------------------

fn tick() -> Envelope {
    Envelope::with_payload(
        "clock.tick".into(),
        eventflow::Payload::json(serde_json::json!({})),
    )
}

#[tokio::test(start_paused = true)]
async fn periodic_timers_publish_on_schedule_until_stopped() {
    let rec = Recorder::new();
    let bus = EventBus::builder()
        .without_registry()
        .recorder(&rec)
        .handler(Handler::new("clock", "clock.*", |_env, _ctx| async {
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    let timer = bus.schedule_every(Duration::from_secs(10), eventflow::MissedTicks::Skip, tick);
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(rec.published().len(), 3, "ticks at 10, 20 and 30 s");
    timer.stop();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rec.published().len(), 3, "nothing after stop");

    let once = bus.schedule_once(Duration::from_secs(5), tick());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rec.published().len(), 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rec.published().len(), 4);
    assert!(once.is_finished());
    let cancelled = bus.schedule_once(Duration::from_secs(5), tick());
    cancelled.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        rec.published().len(),
        4,
        "a stopped one-shot timer publishes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn missed_ticks_are_skipped_or_caught_up_as_chosen() {
    for (policy, expected) in [
        (eventflow::MissedTicks::Skip, 1),
        (eventflow::MissedTicks::CatchUp, 5),
    ] {
        let rec = Recorder::new();
        let bus = EventBus::builder()
            .without_registry()
            .recorder(&rec)
            .handler(Handler::new("clock", "clock.*", |_env, _ctx| async {
                Ok(())
            }))
            .build()
            .await
            .unwrap();
        let _timer = bus.schedule_every(Duration::from_secs(1), policy, tick);
        // Let the timer start, then jump 5.5 s ahead at once, as if the process had been
        // busy: the ticks at 1, 2, 3, 4 and 5 s were missed.
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(5_500)).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(rec.published().len(), expected, "{policy:?}");
        bus.shutdown().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn timers_end_when_the_bus_shuts_down() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("clock", "clock.*", |_env, _ctx| async {
            Ok(())
        }))
        .build()
        .await
        .unwrap();
    let timer = bus.schedule_every(Duration::from_secs(1), eventflow::MissedTicks::Skip, tick);
    bus.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(timer.is_finished());
}
