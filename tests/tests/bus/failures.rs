//! Failures of the bus, end to end.

use super::*;

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
