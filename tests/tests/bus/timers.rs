//! Timers of the bus, end to end.

use super::*;

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
