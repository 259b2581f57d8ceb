//! Spans for publish, delivery and each attempt, with the event's id, name, correlation id,
//! the handler and the attempt.
#![allow(clippy::unwrap_used)] // test code

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use eventflow::{Envelope, EventBus, Handler, HandlerError, Payload, RetryPolicy};
use eventflow_tests::span_field as field;

#[test]
fn publish_delivery_and_attempts_have_spans_with_their_ids() {
    let (capture, _default, rt) = eventflow_tests::span_capture_runtime();
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

        let spans = capture.spans();
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

#[test]
fn spans_form_one_trace_from_publish_to_follow_ups() {
    let (capture, _default, rt) = eventflow_tests::span_capture_runtime();
    let seen = Arc::new(Mutex::new(Vec::new()));
    rt.block_on(async {
        let s = seen.clone();
        let s2 = seen.clone();
        let bus = EventBus::builder()
            .without_registry()
            .handler(Handler::new("first", "chain.start", move |_env, ctx| {
                let s = s.clone();
                async move {
                    s.lock().unwrap().push(ctx.envelope().trace.unwrap());
                    ctx.publish_raw("chain.next", serde_json::json!({})).await?;
                    Ok(())
                }
            }))
            .handler(Handler::new("second", "chain.next", move |_env, ctx| {
                let s = s2.clone();
                async move {
                    s.lock().unwrap().push(ctx.envelope().trace.unwrap());
                    Ok(())
                }
            }))
            .build()
            .await
            .unwrap();
        // A trace begun elsewhere (an incoming HTTP request) continues through the bus.
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        bus.publish_envelope(
            Envelope::with_payload("chain.start".into(), Payload::json(serde_json::json!({})))
                .with_header("traceparent", incoming)
                .with_header("tenant", "acme"),
        )
        .await
        .unwrap();
        for _ in 0..500 {
            if seen.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        bus.shutdown().await.unwrap();
    });
    let spans = capture.spans();
    let find = |name: &str, n: usize| {
        spans
            .iter()
            .filter(|(s, _)| s == name)
            .nth(n)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} #{n} in {spans:?}"))
    };
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (p1, d1, a1) = (
        find("eventflow.publish", 0),
        find("eventflow.deliver", 0),
        find("eventflow.attempt", 0),
    );
    let (p2, d2, a2) = (
        find("eventflow.publish", 1),
        find("eventflow.deliver", 1),
        find("eventflow.attempt", 1),
    );
    for f in [&p1, &d1, &a1, &p2, &d2, &a2] {
        assert_eq!(field(f, "trace_id"), Some(trace), "{f}");
    }
    assert_eq!(field(&p1, "parent_id"), Some("00f067aa0ba902b7"));
    // Each span names the one before it as its parent.
    for (parent, child) in [(&p1, &d1), (&d1, &a1), (&a1, &p2), (&p2, &d2), (&d2, &a2)] {
        assert_eq!(
            field(child, "parent_id"),
            field(parent, "span_id"),
            "{parent} -> {child}"
        );
    }
    // Handlers see their attempt's context: what they pass on to outgoing calls.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        format!("{:016x}", seen[0].parent_id),
        field(&a1, "span_id").unwrap()
    );
    assert_eq!(
        format!("{:016x}", seen[1].parent_id),
        field(&a2, "span_id").unwrap()
    );
    assert!(seen.iter().all(|t| format!("{:032x}", t.trace_id) == trace));
}

#[test]
fn tracing_off_makes_no_spans_and_keeps_the_context_it_was_given() {
    let (capture, _default, rt) = eventflow_tests::span_capture_runtime();
    let seen = Arc::new(Mutex::new(None));
    rt.block_on(async {
        let s = seen.clone();
        let bus = EventBus::builder()
            .without_registry()
            .tracing(false)
            .handler(Handler::new("h", "quiet.*", move |_env, ctx| {
                let s = s.clone();
                async move {
                    *s.lock().unwrap() = ctx.envelope().trace;
                    Ok(())
                }
            }))
            .build()
            .await
            .unwrap();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        bus.dispatch_envelope(
            Envelope::with_payload("quiet.one".into(), Payload::json(serde_json::json!({})))
                .with_header("traceparent", incoming),
        )
        .await
        .unwrap();
    });
    assert!(capture.spans().is_empty());
    let t = seen.lock().unwrap().unwrap();
    assert_eq!(
        t.to_traceparent(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
}
