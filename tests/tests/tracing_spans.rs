//! Spans for publish, delivery and each attempt, with the event's id, name, correlation id,
//! the handler and the attempt.
#![allow(clippy::unwrap_used)] // test code

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eventflow::{Envelope, EventBus, Handler, HandlerError, Payload, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every span's name and fields.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<(String, String)>>>,
    next: Arc<AtomicU64>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        self.spans
            .lock()
            .unwrap()
            .push((attrs.metadata().name().to_owned(), f.0));
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn publish_delivery_and_attempts_have_spans_with_their_ids() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let bus = EventBus::builder()
            .without_registry()
            .handler(
                Handler::new("charge", "pay.*", move |_env, _ctx| {
                    let c = c.clone();
                    async move {
                        if c.fetch_add(1, Ordering::SeqCst) == 0 {
                            Err(HandlerError::msg("busy"))
                        } else {
                            Ok(())
                        }
                    }
                })
                .retry(RetryPolicy::attempts(2).backoff(0.0, 0.0)),
            )
            .build()
            .await
            .unwrap();
        let env = Envelope::with_payload("pay.card".into(), Payload::json(serde_json::json!({})));
        let (id, correlation) = (env.id, env.correlation_id);
        assert!(bus.dispatch_envelope(env).await.unwrap().is_success());
        bus.publish_envelope(Envelope::with_payload(
            "pay.cash".into(),
            Payload::json(serde_json::json!({})),
        ))
        .await
        .unwrap();
        bus.shutdown().await.unwrap();

        let spans = capture.spans.lock().unwrap().clone();
        let named = |n: &str| {
            spans
                .iter()
                .filter(|(name, _)| name == n)
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>()
        };
        let deliver = named("eventflow.deliver");
        assert!(deliver[0].contains(&format!("id={id}")), "{deliver:?}");
        assert!(
            deliver[0].contains("event=pay.card")
                && deliver[0].contains(&format!("correlation={correlation}"))
        );
        let attempts = named("eventflow.attempt");
        assert!(
            attempts[0].contains("handler=charge") && attempts[0].contains("attempt=1"),
            "{attempts:?}"
        );
        assert!(
            attempts[1].contains("handler=charge") && attempts[1].contains("attempt=2"),
            "{attempts:?}"
        );
        assert!(
            attempts.iter().all(
                |a| a.contains(&format!("correlation={correlation}")) || a.contains("pay.cash")
            )
        );
        let publish = named("eventflow.publish");
        assert_eq!(publish.len(), 1, "{spans:?}");
        assert!(publish[0].contains("event=pay.cash"));
    });
}
