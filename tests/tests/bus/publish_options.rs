//! Options of one publish: they win over the handler's settings for that event alone.

use super::*;
use eventflow::PublishOptions;

fn always_fails(name: &str, calls: Arc<AtomicUsize>) -> Handler {
    Handler::new(name, "opts.*", move |_e, _ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(HandlerError::msg("down")) }
    })
}

#[tokio::test]
async fn max_attempts_of_one_publish_win_over_the_handlers() {
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let bus = EventBus::builder()
        .without_registry()
        .handler(always_fails("no_retry", a.clone()))
        .handler(always_fails("five", b.clone()).retry(RetryPolicy::attempts(5).backoff(0.0, 0.0)))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_with(UserDeleted { id: 1 }, PublishOptions::new().max_attempts(3))
        .await;
    // `UserDeleted` is not `opts.*`: nothing matches, so it is refused.
    assert!(matches!(report, Err(EventError::NoHandler(_))));
    let env = Envelope::with_payload(
        "opts.one".into(),
        eventflow::Payload::json(serde_json::json!({})),
    );
    let (env, _) = PublishOptions::new()
        .max_attempts(3)
        .apply(env.with_priority(0));
    let report = bus.dispatch_envelope(env).await.unwrap();
    assert_eq!(report.outcome("no_retry").unwrap().attempts, 3);
    assert_eq!(report.outcome("five").unwrap().attempts, 3);
    // Without options, each handler's own.
    let report = bus
        .dispatch_raw("opts.two", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("no_retry").unwrap().attempts, 1);
    assert_eq!(report.outcome("five").unwrap().attempts, 5);
}

#[tokio::test(start_paused = true)]
async fn timeout_priority_headers_and_delay_of_one_publish() {
    let seen = Log::default();
    let s = seen.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(
            Handler::new("slow", "opts.*", move |e, ctx| {
                s.push(format!(
                    "{} p{} tenant={:?}",
                    e.name,
                    e.priority,
                    ctx.headers().get("tenant")
                ));
                async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<(), HandlerError>(())
                }
            })
            .timeout(Duration::from_secs(60)),
        )
        .build()
        .await
        .unwrap();
    let env = || {
        Envelope::with_payload(
            "opts.slow".into(),
            eventflow::Payload::json(serde_json::json!({})),
        )
    };
    let (quick, _) = PublishOptions::new()
        .timeout(Duration::from_secs(1))
        .priority(7)
        .header("tenant", "acme")
        .apply(env());
    let report = bus.dispatch_envelope(quick).await.unwrap();
    assert_eq!(
        report.outcome("slow").unwrap().error().unwrap().kind(),
        HandlerErrorKind::TimedOut
    );
    assert_eq!(seen.entries(), ["opts.slow p7 tenant=Some(\"acme\")"]);
    // The handler's own 60 s bound otherwise.
    assert!(bus.dispatch_envelope(env()).await.unwrap().is_success());
    // A delay: delivered once it has passed.
    let start = tokio::time::Instant::now();
    bus.publish_envelope_with(env(), PublishOptions::new().delay(Duration::from_secs(30)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(seen.entries().len(), 2, "not before its time");
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(seen.entries().len(), 3, "delivered once its delay passed");
    assert!(start.elapsed() >= Duration::from_secs(30));
}
