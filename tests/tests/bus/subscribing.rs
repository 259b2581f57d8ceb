//! Subscribing and unsubscribing handlers on a running bus.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_while_10_000_events_are_published_loses_none_and_leaks_none() {
    let base = Arc::new(AtomicUsize::new(0));
    let b = base.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("base", "load.*", move |_e, _ctx| {
            b.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), HandlerError>(()) }
        }))
        .build()
        .await
        .unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 0..10_000u32 {
                bus.publish_raw("load.item", serde_json::json!({ "n": n }))
                    .await
                    .unwrap();
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let (mut rounds, mut taken) = (0, 0);
    let late = Arc::new(AtomicUsize::new(0));
    while !publisher.is_finished() || rounds < 3 {
        let got = Arc::new(AtomicUsize::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let (g, d, l) = (got.clone(), gone.clone(), late.clone());
        let sub = bus
            .subscribe(Handler::new("temp", "load.*", move |_e, _ctx| {
                if d.load(Ordering::SeqCst) {
                    l.fetch_add(1, Ordering::SeqCst);
                }
                g.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), HandlerError>(()) }
            }))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(sub.unsubscribe().await);
        gone.store(true, Ordering::SeqCst);
        taken += got.load(Ordering::SeqCst);
        rounds += 1;
    }
    publisher.await.unwrap();
    eventflow_tests::wait_until("every event handled by the permanent handler", || {
        base.load(Ordering::SeqCst) == 10_000
    })
    .await;
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "a delivery after unsubscribe returned"
    );
    assert!(
        taken > 0,
        "the subscribed handler saw none of the events ({rounds} rounds)"
    );
    assert_eq!(bus.handler_names(), ["base"]);
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_subscription_is_refused_as_at_start_up() {
    let ok = || {
        Handler::new("audit", "user.*", |_e, _ctx| async {
            Ok::<(), HandlerError>(())
        })
    };
    let bus = EventBus::builder()
        .without_registry()
        .handler(ok())
        .build()
        .await
        .unwrap();
    let duplicate = bus.subscribe(ok()).unwrap_err();
    let at_start = match EventBus::builder()
        .without_registry()
        .handler(ok())
        .handler(ok())
        .build()
        .await
    {
        Err(EventError::Validation(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(duplicate.problems[0].kind, at_start.problems[0].kind);
    assert!(duplicate.to_string().contains("audit"), "{duplicate}");
    let bad = bus
        .subscribe(Handler::new("odd", "user..created", |_e, _ctx| async {
            Ok::<(), HandlerError>(())
        }))
        .unwrap_err();
    assert_eq!(
        bad.problems[0].kind,
        eventflow::ProblemKind::InvalidPattern,
        "{bad}"
    );
    // Nothing changed.
    assert_eq!(bus.handler_names(), ["audit"]);
    assert!(!bus.unsubscribe("odd").await);
}
