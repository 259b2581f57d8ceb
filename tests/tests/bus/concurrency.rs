//! Concurrency of the bus, end to end.

use super::*;

// ---- concurrency and priority -------------------------------------------------------------------

static ORDER: LazyLock<Log> = LazyLock::new(Log::default);
static ORDER_GATE: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(0));
static FIRST_RUNNING: AtomicBool = AtomicBool::new(false);

#[event_handler("work.item", name = "one_at_a_time", executor = Tokio, concurrency = 1)]
async fn one_at_a_time(e: &Envelope) -> Result<(), HandlerError> {
    let label = e.payload_json()?["label"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    if label == "first" {
        FIRST_RUNNING.store(true, Ordering::SeqCst);
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
    // The first holds the handler's one slot before the others are published.
    while !FIRST_RUNNING.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
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
