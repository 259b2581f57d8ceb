//! The admin API on a Redis bus (a queue of its own per test, deleted after): dead letters
//! paged, filtered, retried and deleted from another process's bus; credentials in the
//! Redis URL never in an answer.
#![allow(clippy::unwrap_used)] // test code

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use eventflow_admin::Admin;
use eventflow_redis::{RedisBusExt, RedisConfig};
use eventflow_runtime::{Envelope, EventBus, Handler, HandlerError, Payload};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn url() -> String {
    std::env::var("EVENTFLOW_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A queue name of this test's own, its keys deleted when dropped.
struct Queue(String);

impl Drop for Queue {
    fn drop(&mut self) {
        if let Ok(c) = redis::Client::open(url())
            && let Ok(mut conn) = c.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.0))
                .query(&mut conn)
                .unwrap_or_default();
            for k in keys {
                let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut conn);
            }
        }
    }
}

async fn redis_or_skip(test: &str) -> Option<Queue> {
    let reached = async {
        let client = redis::Client::open(url()).map_err(|e| e.to_string())?;
        let mut c = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), reached).await {
        Ok(Ok(_)) => Some(Queue(format!(
            "eventflow-test:admin-{test}:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ))),
        other if std::env::var("EVENTFLOW_REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!(
                "Redis is required (EVENTFLOW_REQUIRE_REDIS=1) but {} cannot be reached: {other:?}",
                url()
            )
        }
        other => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test}: Redis at {} cannot be reached ({other:?}); set EVENTFLOW_REQUIRE_REDIS=1 to make this a failure !!!!!!!!\n",
                url()
            );
            None
        }
    }
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "admin.test")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn json_of(app: &Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let (s, b) = call(app, method, uri).await;
    (
        s,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{uri}: {e}: {b}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_redis_are_paged_filtered_retried_and_deleted() {
    let Some(q) = redis_or_skip("letters").await else {
        return;
    };
    let mut cfg = RedisConfig::new(url());
    cfg.queue = q.0.clone();
    cfg.block = std::time::Duration::from_millis(100);
    cfg.promote_interval = std::time::Duration::from_millis(20);
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(cfg.clone())
        .handler(Handler::new("billing", "invoice.*", |_e, _ctx| async {
            Err::<(), _>(HandlerError::permanent_msg("card declined"))
        }))
        .handler(Handler::new("mailer", "mail.*", |_e, _ctx| async {
            Err::<(), _>(HandlerError::permanent_msg("smtp down"))
        }))
        .build()
        .await
        .unwrap();
    worker.start().await.unwrap();
    for i in 0..6 {
        for name in ["invoice.due", "mail.send"] {
            let env = Envelope::with_payload(name.into(), Payload::json(json!({ "n": i })));
            worker.publish_envelope(env).await.unwrap();
        }
    }
    let start = std::time::Instant::now();
    while worker.dead_letters().await.unwrap().len() < 12 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "letters stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The admin app runs on a bus of its own (another process's, as it would be).
    let admin_bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .unwrap();
    let app = Admin::new(admin_bus).router();
    let (s, o) = json_of(&app, "GET", "/api/overview").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (o["backend"].as_str(), o["dead_letters"].as_u64()),
        (Some("redis"), Some(12))
    );
    // Paging across pages: every letter once.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, v) = json_of(&app, "GET", &format!("/api/dead-letters?limit=5{cursor}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        ids.extend(
            v["letters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_owned()),
        );
        match v["next"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    let (_, v) = json_of(&app, "GET", "/api/dead-letters?handler=mailer&limit=100").await;
    assert_eq!(v["letters"].as_array().unwrap().len(), 6);
    let first = v["letters"][0]["id"].as_str().unwrap().to_owned();
    let (s, d) = json_of(&app, "GET", &format!("/api/dead-letters/{first}")).await;
    assert_eq!(
        (s, d["envelope"]["name"].as_str()),
        (StatusCode::OK, Some("mail.send"))
    );
    // Retrying on Redis queues it for a worker; it fails again and comes back.
    let (s, r) = json_of(&app, "POST", &format!("/api/dead-letters/{first}/retry")).await;
    assert_eq!(
        (s, r["outcome"].as_str()),
        (StatusCode::OK, Some("queued")),
        "{r}"
    );
    let (s, r) = json_of(&app, "DELETE", "/api/dead-letters?handler=billing").await;
    assert_eq!((s, r["removed"].as_u64()), (StatusCode::OK, Some(6)), "{r}");
    let (s, _) = call(&app, "GET", "/dead-letters?handler=mailer").await;
    assert_eq!(s, StatusCode::OK);
    worker.shutdown().await.unwrap();
}

/// Deletes the ACL user when the test ends, panics included.
struct AclUser(String);

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(c) = redis::Client::open(url())
            && let Ok(mut conn) = c.get_connection()
        {
            let _: Result<i64, _> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.0)
                .query(&mut conn);
        }
    }
}

#[tokio::test]
async fn a_password_in_the_redis_url_is_never_in_an_answer() {
    let Some(q) = redis_or_skip("secret").await else {
        return;
    };
    let user = AclUser(format!("ef-admin-{}", &q.0[q.0.len() - 8..]));
    let client = redis::Client::open(url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.0)
        .arg("on")
        .arg(">pa55-w0rd-admin")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let with_secret = url().replacen(
        "redis://",
        &format!("redis://{}:pa55-w0rd-admin@", user.0),
        1,
    );
    let mut cfg = RedisConfig::new(with_secret);
    cfg.queue = q.0.clone();
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .redis_config(cfg)
        .build()
        .await
        .unwrap();
    let app = Admin::new(bus).router();
    for uri in [
        "/api/overview",
        "/api/handlers",
        "/api/dead-letters",
        "/",
        "/dead-letters",
        "/metrics",
    ] {
        let (s, b) = call(&app, "GET", uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        assert!(!b.contains("pa55-w0rd-admin"), "{uri} shows the password");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_events_and_workers_on_redis() {
    let Some(q) = redis_or_skip("delayed").await else {
        return;
    };
    let mut cfg = RedisConfig::new(url());
    cfg.queue = q.0.clone();
    cfg.block = std::time::Duration::from_millis(100);
    let worker = EventBus::builder()
        .without_registry()
        .redis_config(cfg.clone())
        .handler(Handler::new("later", "later.*", |_e, _ctx| async {
            Ok::<(), HandlerError>(())
        }))
        .build()
        .await
        .unwrap();
    worker.start().await.unwrap();
    let env = Envelope::with_payload("later.one".into(), Payload::json(json!({})));
    let id = env.id.to_string();
    worker
        .publish_envelope_delayed(env, std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let app = Admin::new(worker.clone()).router();
    let (s, v) = json_of(&app, "GET", "/api/delayed").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["delayed"][0]["id"], id.as_str(), "{v}");
    let (s, _) = json_of(&app, "DELETE", &format!("/api/delayed/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = json_of(&app, "GET", "/api/delayed").await;
    assert!(v["delayed"].as_array().unwrap().is_empty());
    // The worker reads its lanes: it is a consumer of the group.
    let start = std::time::Instant::now();
    loop {
        let (s, v) = json_of(&app, "GET", "/api/workers").await;
        assert_eq!(s, StatusCode::OK);
        if v["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            assert!(
                v["workers"][0]["name"]
                    .as_str()
                    .unwrap()
                    .contains(&std::process::id().to_string())
            );
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    worker.shutdown().await.unwrap();
}
