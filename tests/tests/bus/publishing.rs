//! Publishing of the bus, end to end.

use super::*;

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
