//! The admin app's API and pages against a memory bus and a Redis bus: every endpoint,
//! filters, paging, bulk actions, read-only mode, authentication, the same-origin check,
//! escaping and bad requests.
#![allow(clippy::unwrap_used)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventflow_admin::Admin;
use eventflow_runtime::{Envelope, EventBus, Handler, HandlerError, Payload};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "admin.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn json_of(app: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let (s, b) = call(app, method, uri, &[]).await;
    (
        s,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {b}")),
    )
}

/// A memory bus with `billing` (fails while `failing` is set) and `mailer` (always fails),
/// and `n` dead letters of each.
async fn bus_with_letters(n: usize, failing: Arc<AtomicBool>) -> EventBus {
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("billing", "invoice.*", move |_e, _ctx| {
            let failing = failing.clone();
            async move {
                if failing.load(Ordering::SeqCst) {
                    Err(HandlerError::msg("card declined: insufficient funds"))
                } else {
                    Ok(())
                }
            }
        }))
        .handler(Handler::new("mailer", "mail.*", |_e, _ctx| async {
            Err::<(), _>(HandlerError::msg("smtp timed out"))
        }))
        .build()
        .await
        .unwrap();
    fill(&bus, n).await;
    bus
}

async fn fill(bus: &EventBus, n: usize) {
    for i in 0..n {
        let inv = Envelope::with_payload(
            "invoice.due".into(),
            Payload::json(json!({"n": i, "note": "<script>alert(1)</script>"})),
        );
        bus.dispatch_envelope(inv).await.unwrap();
        let mail = Envelope::with_payload("mail.send".into(), Payload::json(json!({"n": i})));
        bus.dispatch_envelope(mail).await.unwrap();
    }
}

/// Every letter id the list gives, page after page of `limit`.
async fn all_ids(app: &Router, filter: &str, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/api/dead-letters?limit={limit}&{filter}");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let (s, v) = json_of(app, "GET", &uri).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        pages += 1;
        for l in v["letters"].as_array().unwrap() {
            ids.push(l["id"].as_str().unwrap().to_owned());
        }
        match v["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 1000);
    }
    (ids, pages)
}

#[tokio::test]
async fn every_endpoint_answers_on_the_memory_bus() {
    let bus = bus_with_letters(2, Arc::new(AtomicBool::new(true))).await;
    let app = Admin::new(bus.clone()).router();
    let (s, o) = json_of(&app, "GET", "/api/overview").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(o["backend"], "memory");
    assert_eq!(o["reachable"], true);
    assert_eq!(o["published"], 4);
    assert_eq!(o["dead_letters"], 4);
    assert!(o["health"]["status"].is_string());
    let (_, h) = json_of(&app, "GET", "/api/handlers").await;
    let billing = h["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "billing")
        .unwrap()
        .clone();
    assert_eq!(billing["pattern"], "invoice.*");
    assert_eq!(billing["executor"], "Inline");
    assert_eq!(billing["delivered"], 2);
    assert_eq!(billing["dead_lettered"], 2);
    assert_eq!(billing["success_rate"], 0.0);
    assert!(billing["p50_ms"].is_number(), "{billing}");
    let (s, v) = json_of(&app, "GET", "/api/schedules").await;
    assert_eq!(
        (s, v["schedules"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (s, v) = json_of(&app, "GET", "/api/pipelines").await;
    assert_eq!(
        (s, v["pipelines"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (s, m) = call(&app, "GET", "/metrics", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(m.contains("eventflow_events_published_total 4"), "{m}");
    assert!(
        m.contains("eventflow_events_dead_lettered_total{handler=\"billing\"} 2"),
        "{m}"
    );
    for page in ["/", "/handlers", "/dead-letters", "/schedules"] {
        let (s, html) = call(&app, "GET", page, &[]).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert!(html.starts_with("<!doctype html>"), "{page}");
    }
    let (_, html) = call(&app, "GET", "/", &[]).await;
    assert!(
        html.contains("id=\"rate-chart\""),
        "the overview has its chart"
    );
}

#[tokio::test]
async fn dead_letters_page_filter_search_and_act_one_by_one() {
    let failing = Arc::new(AtomicBool::new(true));
    let bus = bus_with_letters(7, failing.clone()).await;
    let app = Admin::new(bus.clone()).router();
    let (ids, pages) = all_ids(&app, "", 3).await;
    assert_eq!(ids.len(), 14);
    assert_eq!(pages, 5, "14 letters in pages of 3");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 14, "no letter twice across pages");
    let (billing, _) = all_ids(&app, "handler=billing", 100).await;
    assert_eq!(billing.len(), 7);
    let (mail, _) = all_ids(&app, "event=mail.send", 100).await;
    assert_eq!(mail.len(), 7);
    let (found, _) = all_ids(&app, "q=INSUFFICIENT", 100).await;
    assert_eq!(
        found, billing,
        "the search ignores case and finds billing's error"
    );
    // One letter, with its envelope; the page shows the payload as text.
    let id = &billing[0];
    let (s, d) = json_of(&app, "GET", &format!("/api/dead-letters/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d["handler"], "billing");
    assert_eq!(d["envelope"]["name"], "invoice.due");
    assert!(
        d["envelope"]["payload"]
            .as_str()
            .unwrap()
            .contains("<script>")
    );
    let (_, html) = call(&app, "GET", &format!("/dead-letters/{id}"), &[]).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!html.contains("<script>alert(1)"), "never raw");
    // Retry with the fault fixed: it succeeds, leaves the list, the counters move.
    failing.store(false, Ordering::SeqCst);
    let (s, r) = json_of(&app, "POST", &format!("/api/dead-letters/{id}/retry")).await;
    assert_eq!(
        (s, r["outcome"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{r}"
    );
    let (left, _) = all_ids(&app, "handler=billing", 100).await;
    assert_eq!(left.len(), 6);
    let (_, h) = json_of(&app, "GET", "/api/handlers").await;
    let billing_now = h["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "billing")
        .unwrap()
        .clone();
    assert_eq!(billing_now["succeeded"], 1);
    // Delete one; it is gone, and a second delete is a 404.
    let (s, _) = json_of(&app, "DELETE", &format!("/api/dead-letters/{}", mail[0])).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = json_of(&app, "DELETE", &format!("/api/dead-letters/{}", mail[0])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["error"].is_string());
    assert_eq!(bus.dead_letters().await.unwrap().len(), 12);
}

#[tokio::test]
async fn bulk_retry_and_delete_take_the_filter_and_say_how_many() {
    let failing = Arc::new(AtomicBool::new(true));
    let bus = bus_with_letters(5, failing.clone()).await;
    let app = Admin::new(bus.clone()).router();
    failing.store(false, Ordering::SeqCst);
    let (s, r) = json_of(&app, "POST", "/api/dead-letters/retry?handler=billing").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["retried"], 5, "{r}");
    let (s, r) = json_of(&app, "POST", "/api/dead-letters/retry?handler=mailer").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (r["retried"].as_u64(), r["failed_again"].as_u64()),
        (Some(0), Some(5)),
        "{r}"
    );
    // Mailer's letters are back, under new ids; delete them all.
    let (s, r) = json_of(&app, "DELETE", "/api/dead-letters?q=smtp").await;
    assert_eq!((s, r["removed"].as_u64()), (StatusCode::OK, Some(5)), "{r}");
    assert!(bus.dead_letters().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_json_error() {
    let bus = bus_with_letters(1, Arc::new(AtomicBool::new(true))).await;
    let app = Admin::new(bus).router();
    for (method, uri, status) in [
        (
            "GET",
            "/api/dead-letters/not-a-uuid",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/dead-letters/00000000-0000-0000-0000-000000000000",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/dead-letters/00000000-0000-0000-0000-000000000000/retry",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/api/dead-letters?cursor=abc",
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/api/dead-letters?limit=0", StatusCode::BAD_REQUEST),
        (
            "GET",
            "/api/dead-letters?limit=5000",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/dead-letters?limit=many",
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/api/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let (s, b) = call(&app, method, uri, &[]).await;
        assert_eq!(s, status, "{method} {uri}: {b}");
        let v: Value = serde_json::from_str(&b).unwrap_or_else(|_| panic!("{uri}: {b}"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}: {b}"
        );
    }
}

#[tokio::test]
async fn read_only_mode_refuses_every_change() {
    let bus = bus_with_letters(1, Arc::new(AtomicBool::new(true))).await;
    let id = bus.dead_letters().await.unwrap()[0].id;
    let app = Admin::new(bus.clone()).read_only(true).router();
    for (method, uri) in [
        ("POST", format!("/api/dead-letters/{id}/retry")),
        ("DELETE", format!("/api/dead-letters/{id}")),
        ("POST", "/api/dead-letters/retry".to_owned()),
        ("DELETE", "/api/dead-letters".to_owned()),
    ] {
        let (s, b) = call(&app, method, &uri, &[]).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}: {b}");
        assert!(b.contains("read-only"));
    }
    assert_eq!(
        bus.dead_letters().await.unwrap().len(),
        2,
        "nothing changed"
    );
    let (s, html) = call(&app, "GET", "/dead-letters", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !html.contains("id=\"retry-all\""),
        "no buttons in read-only mode"
    );
}

#[tokio::test]
async fn authentication_by_token_or_basic_credentials() {
    let bus = bus_with_letters(1, Arc::new(AtomicBool::new(true))).await;
    let app = Admin::new(bus.clone()).bearer_token("t0ken").router();
    assert_eq!(
        call(&app, "GET", "/api/overview", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/overview",
            &[("authorization", "Bearer nope")]
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(
            &app,
            "GET",
            "/api/overview",
            &[("authorization", "Bearer t0ken")]
        )
        .await
        .0,
        StatusCode::OK
    );
    let app = Admin::new(bus).basic_auth("ada", "s3cret").router();
    // "ada:s3cret" and "ada:wrong" in base64.
    assert_eq!(
        call(
            &app,
            "GET",
            "/",
            &[("authorization", "Basic YWRhOnMzY3JldA==")]
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, b) = call(&app, "GET", "/", &[("authorization", "Basic YWRhOndyb25n")]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!b.contains("s3cret"));
}

#[tokio::test]
async fn a_change_from_another_origin_is_refused() {
    let bus = bus_with_letters(1, Arc::new(AtomicBool::new(true))).await;
    let id = bus.dead_letters().await.unwrap()[0].id;
    let app = Admin::new(bus.clone()).router();
    let uri = format!("/api/dead-letters/{id}");
    let (s, b) = call(&app, "DELETE", &uri, &[("origin", "https://evil.example")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = call(
        &app,
        "DELETE",
        &uri,
        &[("referer", "https://evil.example/page")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        bus.dead_letters().await.unwrap().len(),
        2,
        "nothing deleted"
    );
    let (s, _) = call(&app, "DELETE", &uri, &[("origin", "http://admin.test")]).await;
    assert_eq!(s, StatusCode::OK, "the app's own page may");
}

#[tokio::test]
async fn the_router_nests_under_a_prefix_and_its_links_follow() {
    let bus = bus_with_letters(1, Arc::new(AtomicBool::new(true))).await;
    let app = Router::new().nest("/eventflow", Admin::new(bus).router());
    let (s, html) = call(&app, "GET", "/eventflow/dead-letters", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("href=\"/eventflow/handlers\""),
        "nav links under the prefix"
    );
    assert!(
        html.contains("data-url=\"/eventflow/api/dead-letters/"),
        "actions under the prefix"
    );
}

#[tokio::test]
async fn delayed_events_are_listed_paged_and_cancelled_on_the_memory_bus() {
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let d = delivered.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("later", "later.*", move |_e, _ctx| {
            let d = d.clone();
            async move {
                d.fetch_add(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        }))
        .build()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, ms) in [400u64, 300, 3_600_000].into_iter().enumerate() {
        let env = Envelope::with_payload(
            format!("later.e{i}").as_str().into(),
            Payload::json(json!({})),
        );
        ids.push(env.id.to_string());
        bus.publish_envelope_delayed(env, std::time::Duration::from_millis(ms))
            .await
            .unwrap();
    }
    let app = Admin::new(bus.clone()).router();
    let (s, v) = json_of(&app, "GET", "/api/delayed?limit=2").await;
    assert_eq!(s, StatusCode::OK);
    let first: Vec<&str> = v["delayed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(first, ["later.e1", "later.e0"], "soonest first");
    let next = v["next"].as_str().unwrap().to_owned();
    let (_, v) = json_of(&app, "GET", &format!("/api/delayed?limit=2&cursor={next}")).await;
    assert_eq!(v["delayed"][0]["event"], "later.e2");
    assert!(v["next"].is_null());
    // Cancel the one due in 400 ms: it is never delivered; the other one is.
    let (s, _) = json_of(&app, "DELETE", &format!("/api/delayed/{}", ids[0])).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = json_of(&app, "DELETE", &format!("/api/delayed/{}", ids[0])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = json_of(&app, "GET", "/api/delayed?limit=0").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = json_of(&app, "DELETE", "/api/delayed/nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        delivered.load(Ordering::SeqCst),
        1,
        "the cancelled one was not delivered"
    );
    let (_, v) = json_of(&app, "GET", "/api/delayed").await;
    assert_eq!(v["delayed"].as_array().unwrap().len(), 1);
    let (s, html) = call(&app, "GET", "/delayed", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("later.e2"));
    // The memory backend has no consumers to show.
    let (s, v) = json_of(&app, "GET", "/api/workers").await;
    assert_eq!(
        (s, v["workers"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    assert_eq!(call(&app, "GET", "/workers", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn schedules_show_their_schedule_next_tick_and_last_error() {
    let bus = EventBus::builder()
        .without_registry()
        .scheduled(eventflow_runtime::ScheduledJob::new(
            "nightly_report",
            eventflow_runtime::Schedule::every(std::time::Duration::from_millis(100)).unwrap(),
            |_ctx| async { Err::<(), _>(HandlerError::msg("report store <offline>")) },
        ))
        .build()
        .await
        .unwrap();
    let app = Admin::new(bus.clone()).router();
    let start = std::time::Instant::now();
    loop {
        let (_, v) = json_of(&app, "GET", "/api/schedules").await;
        let s = &v["schedules"][0];
        if s["failed"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(s["name"], "nightly_report");
            assert_eq!(s["last_outcome"], "failed");
            assert!(s["last_error"].as_str().unwrap().contains("report store"));
            assert!(s["next_tick_ms"].as_u64().unwrap() > 0);
            assert!(s["schedule"].as_str().unwrap().contains("100"), "{s}");
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, html) = call(&app, "GET", "/schedules", &[]).await;
    assert!(
        html.contains("report store &lt;offline&gt;"),
        "the error, escaped"
    );
    bus.shutdown().await.unwrap();
}
