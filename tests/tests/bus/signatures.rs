//! Signatures of the bus, end to end.

use super::*;

// ---- every accepted signature -------------------------------------------------------

static SIGS: LazyLock<Log> = LazyLock::new(Log::default);

#[event_handler("user.created", name = "by_value")]
async fn by_value(event: UserCreated) -> Result<(), HandlerError> {
    SIGS.push(format!("by_value {}", event.email));
    Ok(())
}

#[event_handler("user.created", name = "by_ref_with_ctx")]
async fn by_ref_with_ctx(ctx: &HandlerContext, event: &UserCreated) -> eventflow::Result<()> {
    SIGS.push(format!("by_ref {} attempt {}", event.id, ctx.attempt()));
    Ok(())
}

#[event_handler("user.*", name = "envelope_ref")]
async fn envelope_ref(event: &Envelope) {
    SIGS.push(format!("envelope_ref {}", event.name));
}

#[event_handler("user.created", name = "envelope_owned")]
async fn envelope_owned(event: Envelope, _ctx: HandlerContext) -> Result<(), std::io::Error> {
    SIGS.push(format!(
        "envelope_owned {}",
        event.payload_json()?["email"].as_str().unwrap_or("?")
    ));
    Ok(())
}

#[event_handler("user.created", name = "plain_fn")]
fn plain_fn(event: UserCreated) -> Result<(), HandlerError> {
    let thread = std::thread::current().name().unwrap_or("").to_owned();
    SIGS.push(format!(
        "plain_fn {} on_async_worker={}",
        event.id,
        thread.starts_with("tokio-runtime-worker")
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signature_receives_the_event() {
    let bus = EventBus::builder()
        .only([
            "by_value",
            "by_ref_with_ctx",
            "envelope_ref",
            "envelope_owned",
            "plain_fn",
        ])
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch(UserCreated {
            id: 7,
            email: "a@example.com".into(),
        })
        .await
        .unwrap();
    assert!(report.is_success(), "{report:?}");
    assert_eq!(report.outcomes.len(), 5);
    let mut got = SIGS.entries();
    got.sort();
    assert_eq!(
        got,
        [
            "by_ref 7 attempt 1",
            "by_value a@example.com",
            "envelope_owned a@example.com",
            "envelope_ref user.created",
            "plain_fn 7 on_async_worker=false",
        ]
    );
    // `user.*` also sees other user events; the typed handlers do not match them.
    assert_eq!(bus.handlers_for("user.user_deleted"), ["envelope_ref"]);
    assert_eq!(<UserDeleted as eventflow::Event>::NAME, "user_deleted");
}
