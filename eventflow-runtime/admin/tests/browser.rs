//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver). It opens the dead-letter page, sees the failed events, clicks retry and
//! sees the letter leave the list and the handler's counters move; it filters by handler;
//! it finds the overview's chart; a payload holding `<script>` shows as text. A screenshot
//! of each page it visits is saved under `target/admin-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`). Without them the test is skipped with a loud message, unless
//! `EVENTFLOW_REQUIRE_BROWSER=1` (which `.ci/run` sets after installing them), and then it
//! fails.
#![allow(clippy::unwrap_used)] // test code

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventflow_admin::Admin;
use eventflow_runtime::{Envelope, EventBus, Handler, HandlerError, Payload};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, stopped by its PID when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

async fn driver_or_skip() -> Option<Driver> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        let msg =
            format!("{missing:?} not installed (Debian packages chromium and chromium-driver)");
        if std::env::var("EVENTFLOW_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("a browser is required (EVENTFLOW_REQUIRE_BROWSER=1): {msg}");
        }
        eprintln!(
            "\n!!!!!!!! SKIPPED the browser test: {msg}; set EVENTFLOW_REQUIRE_BROWSER=1 to make this a failure !!!!!!!!\n"
        );
        return None;
    }
    let port = free_port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver { child, port };
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(driver)
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
        }),
    );
    // Plain HTTP to the local chromedriver: no TLS needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap()
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn rows(c: &Client) -> usize {
    c.find_all(Locator::Css("tr.letter")).await.unwrap().len()
}

/// Waits up to 10 s for `what` to hold.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_retries_filters_and_charts_in_a_real_browser() {
    let Some(driver) = driver_or_skip().await else {
        return;
    };
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let bus = EventBus::builder()
        .without_registry()
        .handler(Handler::new("billing", "invoice.*", move |_e, _ctx| {
            let f = f.clone();
            async move {
                if f.load(Ordering::SeqCst) {
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
    for i in 0..3 {
        let note = "<script>document.title='pwned'</script>";
        let inv = Envelope::with_payload(
            "invoice.due".into(),
            Payload::json(json!({ "n": i, "note": note })),
        );
        bus.dispatch_envelope(inv).await.unwrap();
        let mail = Envelope::with_payload("mail.send".into(), Payload::json(json!({ "n": i })));
        bus.dispatch_envelope(mail).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Admin::new(bus.clone()).router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let c = browser(&driver).await;

    // The dead-letter page lists the six failures.
    c.goto(&format!("{base}/dead-letters")).await.unwrap();
    assert_eq!(rows(&c).await, 6);
    shot(&c, "dead-letters").await;

    // Retry one of billing's, with the fault fixed: it leaves the list.
    failing.store(false, Ordering::SeqCst);
    let billing_retry = c
        .find(Locator::XPath(
            "//tr[contains(@class,'letter')][td[2]='billing']//button[contains(@class,'retry')]",
        ))
        .await
        .unwrap();
    billing_retry.click().await.unwrap();
    eventually("the retried letter leaves the list", || async {
        rows(&c).await == 5
    })
    .await;
    let flash = c
        .find(Locator::Id("flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(flash.contains("Retried"), "the page says so: {flash}");
    shot(&c, "dead-letters-after-retry").await;

    // The handler's counters moved.
    c.goto(&format!("{base}/handlers")).await.unwrap();
    let succeeded = c
        .find(Locator::Css("tr[data-handler='billing'] td.succeeded"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(succeeded, "1");
    shot(&c, "handlers").await;

    // Filter by handler.
    c.goto(&format!("{base}/dead-letters")).await.unwrap();
    c.find(Locator::Css("#filter-handler option[value='mailer']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Id("filter-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("the filter applied", || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.as_str().contains("handler=mailer"))
    })
    .await;
    assert_eq!(rows(&c).await, 3);
    let cells = c
        .find_all(Locator::Css("tr.letter td:nth-child(2)"))
        .await
        .unwrap();
    for cell in cells {
        assert_eq!(cell.text().await.unwrap(), "mailer");
    }
    shot(&c, "dead-letters-filtered").await;

    // One of billing's letters: the payload's script is text, and did not run.
    let id = bus
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.handler == "billing")
        .unwrap()
        .id;
    c.goto(&format!("{base}/dead-letters/{id}")).await.unwrap();
    let payload = c
        .find(Locator::Id("payload"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        payload.contains("<script>document.title='pwned'</script>"),
        "{payload}"
    );
    assert_ne!(
        c.title().await.unwrap(),
        "pwned",
        "the payload's script did not run"
    );
    shot(&c, "dead-letter").await;

    // The overview and its chart (give the sampler a few seconds to draw).
    for i in 0..5 {
        let env =
            Envelope::with_payload("invoice.due".into(), Payload::json(json!({ "n": 100 + i })));
        bus.publish_envelope(env).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    c.goto(&format!("{base}/")).await.unwrap();
    let chart = c
        .find(Locator::Css("svg#rate-chart polyline"))
        .await
        .unwrap();
    let points = chart.attr("points").await.unwrap().unwrap_or_default();
    assert!(
        points.split(' ').count() >= 2,
        "the chart has a line: {points}"
    );
    shot(&c, "overview").await;
    c.close().await.unwrap();
}
