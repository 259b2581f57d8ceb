//! Handler results (basefunctions' `EventResult`): values in the delivery report, and
//! `request` for the one handler's value.

use std::collections::HashMap;

use super::*;
use eventflow::{PublishOptions, ReplyError};

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
#[event(name = "quote.asked")]
struct Quote {
    qty: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Price {
    cents: u64,
}

#[event_handler("quote.asked", name = "price")]
async fn price(q: Quote) -> Result<Price, HandlerError> {
    if q.qty == 0 {
        return Err(HandlerError::permanent_msg("nothing to price"));
    }
    Ok(Price {
        cents: u64::from(q.qty) * 250,
    })
}

#[event_handler("quote.asked", name = "price_blocking")]
fn price_blocking(q: &Quote) -> Result<u32, std::io::Error> {
    Ok(q.qty + 1)
}

#[event_handler("quote.asked", name = "no_value")]
async fn no_value(_q: Quote) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_handler_value_is_in_the_report_typed_and_as_json() {
    let bus = EventBus::builder()
        .only(["price", "price_blocking", "no_value"])
        .build()
        .await
        .unwrap();
    let report = bus.dispatch(Quote { qty: 4 }).await.unwrap();
    assert_eq!(
        report.value::<Price>("price").unwrap(),
        Price { cents: 1000 }
    );
    assert_eq!(report.value::<u32>("price_blocking").unwrap(), 5);
    assert_eq!(
        report.outcome("price").unwrap().value_json(),
        Some(&serde_json::json!({"cents": 1000}))
    );
    assert!(matches!(
        report.value::<u32>("no_value"),
        Err(ReplyError::NoValue { .. })
    ));
    assert!(matches!(
        report.value::<u32>("price"),
        Err(ReplyError::WrongType { .. })
    ));
    assert!(matches!(
        report.value::<u32>("nobody"),
        Err(ReplyError::NoHandler { .. })
    ));
    // A failed handler has no value, and says why.
    let report = bus.dispatch(Quote { qty: 0 }).await.unwrap();
    match report.value::<Price>("price") {
        Err(ReplyError::Failed { handler, error }) => {
            assert_eq!(handler, "price");
            assert!(error.contains("nothing to price"), "{error}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn request_returns_the_one_handlers_value() {
    let bus = EventBus::builder().only(["price"]).build().await.unwrap();
    let p: Price = bus.request(Quote { qty: 2 }).await.unwrap();
    assert_eq!(p, Price { cents: 500 });
    match bus.request::<Price, _>(Quote { qty: 0 }).await {
        Err(ReplyError::Failed { error, .. }) => assert!(error.contains("nothing to price")),
        other => panic!("expected the handler's failure, got {other:?}"),
    }
}

#[tokio::test]
async fn request_refuses_no_handler_and_more_than_one_before_running_any() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counting = |name: &str| {
        let runs = runs.clone();
        Handler::replying(name, "ask.*", move |n: u32, _ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, HandlerError>(n) }
        })
    };
    let bus = EventBus::builder()
        .without_registry()
        .handler(counting("a"))
        .handler(counting("b"))
        .build()
        .await
        .unwrap();
    let env = eventflow_tests::raw_envelope("ask.x", serde_json::json!(1));
    match bus
        .request_envelope::<u32>(env, PublishOptions::new())
        .await
    {
        Err(ReplyError::MoreThanOne { handlers, .. }) => assert_eq!(handlers, ["a", "b"]),
        other => panic!("expected more than one, got {other:?}"),
    }
    let env = eventflow_tests::raw_envelope("other.x", serde_json::json!(1));
    assert!(matches!(
        bus.request_envelope::<u32>(env, PublishOptions::new())
            .await,
        Err(ReplyError::NoHandler { .. })
    ));
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no handler ran");
    assert_eq!(bus.metrics().published, 0, "neither counts as published");
}

#[tokio::test(start_paused = true)]
async fn request_times_out() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::replying(
            "slow",
            "ask.slow",
            |n: u32, _ctx| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, HandlerError>(n)
            },
        ))
        .build()
        .await
        .unwrap();
    let env = eventflow_tests::raw_envelope("ask.slow", serde_json::json!(1));
    let r = bus
        .request_envelope::<u32>(env, PublishOptions::new().timeout(Duration::from_secs(2)))
        .await;
    match r {
        // The handler's attempt is bounded by the same timeout: whichever ends first.
        Err(ReplyError::TimedOut { timeout, .. }) => assert_eq!(timeout, Duration::from_secs(2)),
        Err(ReplyError::Failed { error, .. }) => assert!(error.contains("timed out"), "{error}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn a_value_that_does_not_serialize_is_a_handler_error_naming_its_type() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::replying(
            "bad",
            "ask.bad",
            |_n: u32, _ctx| async move {
                // JSON object keys must be strings: this map does not serialize.
                let mut m: HashMap<(u8, u8), u8> = HashMap::new();
                m.insert((1, 2), 3);
                Ok::<_, HandlerError>(m)
            },
        ))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_envelope(eventflow_tests::raw_envelope(
            "ask.bad",
            serde_json::json!(1),
        ))
        .await
        .unwrap();
    let o = report.outcome("bad").unwrap();
    assert!(!o.succeeded());
    let err = o.error().unwrap();
    assert_eq!(err.kind(), HandlerErrorKind::Permanent, "not retried");
    assert!(
        err.to_string().contains("HashMap<(u8, u8), u8>"),
        "names the type: {err}"
    );
}

#[tokio::test]
async fn a_command_handlers_standard_output_is_its_value() {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::command(
            "json",
            "cmd.json",
            "sh",
            ["-c", r#"cat > /dev/null; echo '{"total": 42}'"#],
        ))
        .handler(Handler::command(
            "text",
            "cmd.text",
            "sh",
            ["-c", "cat > /dev/null; echo hello"],
        ))
        .build()
        .await
        .unwrap();
    let env = eventflow_tests::raw_envelope("cmd.json", serde_json::json!({}));
    let v: serde_json::Value = bus
        .request_envelope(env, PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(v, serde_json::json!({"total": 42}));
    let env = eventflow_tests::raw_envelope("cmd.text", serde_json::json!({}));
    let v: String = bus
        .request_envelope(env, PublishOptions::new())
        .await
        .unwrap();
    assert_eq!(v, "hello");
}
