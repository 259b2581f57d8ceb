//! Retry policies: linear backoff, policies shared by name, and the bus's defaults for
//! handlers that set none.

use super::*;

/// One policy shared by name, as a `const`.
const SHARED: RetryPolicy = RetryPolicy::linear(4, 0.1, 0.2, 0.4);

/// One policy shared by name, as a function.
fn shared_fn() -> RetryPolicy {
    RetryPolicy::attempts(2).backoff(0.0, 0.0)
}

static LINEAR_TIMES: LazyLock<std::sync::Mutex<Vec<tokio::time::Instant>>> =
    LazyLock::new(Default::default);

#[event_handler("retry.linear", name = "linear_by_const", retry = SHARED)]
async fn linear_by_const(_e: &Envelope) -> Result<(), HandlerError> {
    LINEAR_TIMES
        .lock()
        .unwrap()
        .push(tokio::time::Instant::now());
    Err(HandlerError::msg("down"))
}

static BY_FN_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler("retry.by_fn", name = "retry_by_fn", retry = shared_fn)]
async fn retry_by_fn(_e: &Envelope) -> Result<(), HandlerError> {
    BY_FN_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::msg("down"))
}

#[tokio::test(start_paused = true)]
async fn a_const_policy_named_in_the_attribute_waits_linearly() {
    let bus = EventBus::builder()
        .only(["linear_by_const"])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("retry.linear", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("linear_by_const").unwrap().attempts, 4);
    let times = LINEAR_TIMES.lock().unwrap().clone();
    let waits: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 0.1 s, then 0.2 s more each time, capped at 0.4 s.
    assert_eq!(
        waits,
        [
            Duration::from_millis(100),
            Duration::from_millis(300),
            Duration::from_millis(400)
        ]
    );
}

#[tokio::test]
async fn a_fn_policy_named_in_the_attribute_is_used() {
    let bus = EventBus::builder()
        .only(["retry_by_fn"])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("retry.by_fn", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("retry_by_fn").unwrap().attempts, 2);
    assert_eq!(BY_FN_CALLS.load(Ordering::SeqCst), 2);
}

static UNSET_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler("retry.defaults", name = "sets_no_retry")]
async fn sets_no_retry(_e: &Envelope) -> Result<(), HandlerError> {
    UNSET_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::msg("down"))
}

static ONCE_CALLS: AtomicU32 = AtomicU32::new(0);

#[event_handler("retry.defaults", name = "sets_one_attempt", retry(max_attempts = 1))]
async fn sets_one_attempt(_e: &Envelope) -> Result<(), HandlerError> {
    ONCE_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(HandlerError::msg("down"))
}

#[tokio::test]
async fn the_bus_default_retry_applies_only_to_handlers_that_set_none() {
    let bus = EventBus::builder()
        .only(["sets_no_retry", "sets_one_attempt"])
        .default_retry(RetryPolicy::attempts(3).backoff(0.0, 0.0))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("retry.defaults", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("sets_no_retry").unwrap().attempts, 3);
    assert_eq!(report.outcome("sets_one_attempt").unwrap().attempts, 1);
    assert_eq!(UNSET_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(ONCE_CALLS.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_bus_default_timeout_bounds_handlers_that_set_none() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("slow", "slow.one", |_e, _ctx| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), HandlerError>(())
        }))
        .handler(
            Handler::new("slow_but_allowed", "slow.one", |_e, _ctx| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), HandlerError>(())
            })
            .timeout(Duration::from_secs(60)),
        )
        .default_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("slow.one", serde_json::json!({}))
        .await
        .unwrap();
    let slow = report.outcome("slow").unwrap();
    assert_eq!(slow.error().unwrap().kind(), HandlerErrorKind::TimedOut);
    assert!(report.outcome("slow_but_allowed").unwrap().succeeded());
}
