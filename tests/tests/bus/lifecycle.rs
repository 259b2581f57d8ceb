//! Lifecycle of the bus, end to end.

use super::*;

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
