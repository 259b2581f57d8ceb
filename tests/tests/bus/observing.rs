//! Observing of the bus, end to end.

use super::*;

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

/// `bus.metrics()` without any recorder: percentiles of the last attempts and waits, and
/// the rate over the last minute, kept over `metric_samples` samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_has_percentiles_and_a_rate_without_a_recorder() {
    let bus = EventBus::builder()
        .without_registry()
        .metric_samples(5)
        .handler(Handler::new("sleeper", "nap.*", |e, _ctx| async move {
            let ms = e.payload.to_json()?["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok::<(), HandlerError>(())
        }))
        .build()
        .await
        .unwrap();
    for i in 0..10u64 {
        // Five quick naps, then five of 30 ms: only the last five are kept.
        let ms = if i < 5 { 0 } else { 30 };
        bus.dispatch_raw("nap.one", serde_json::json!({ "ms": ms }))
            .await
            .unwrap();
    }
    let m = bus.metrics();
    let h = m.handler("sleeper").unwrap();
    let run = h.attempt_duration.unwrap();
    assert_eq!(run.samples, 5);
    assert!(run.p50 >= std::time::Duration::from_millis(30), "{run:?}");
    assert!(run.p99 >= run.p95 && run.p95 >= run.p50, "{run:?}");
    assert!(run.p99 < std::time::Duration::from_secs(5), "{run:?}");
    assert_eq!(h.publish_to_handle.unwrap().samples, 5);
    assert_eq!(h.events_last_minute, 10);
    assert!((h.events_per_second() - 10.0 / 60.0).abs() < 1e-9);
    let text = m.to_string();
    assert!(
        text.contains("run p50") && text.contains("wait p99"),
        "{text}"
    );

    // Off: no clock is read, so there is nothing to report.
    let quiet = EventBus::builder()
        .without_registry()
        .metrics(false)
        .handler(Handler::new("sleeper", "nap.*", |_e, _ctx| async {
            Ok::<(), HandlerError>(())
        }))
        .build()
        .await
        .unwrap();
    quiet
        .dispatch_raw("nap.one", serde_json::json!({}))
        .await
        .unwrap();
    let h = quiet.metrics().handler("sleeper").unwrap().clone();
    assert_eq!(h.delivered, 1);
    assert_eq!(h.attempt_duration, None);
    assert_eq!(h.events_last_minute, 0);
}
