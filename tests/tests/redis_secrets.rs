//! Credentials never show in what eventflow prints, and a server that needs a password the
//! URL lacks (or refuses the one given) fails the build with that said. Runs against a
//! Redis server the test starts with `--requirepass`.
#![allow(clippy::unwrap_used)] // test code

use eventflow::EventBus;
use eventflow::redis::{RedisBusExt, RedisConfig};
use eventflow_tests::OwnRedis;

const SECRET: &str = "s3cr3t-Pw9";

/// Every line of an error and of its sources, in `Display` and `Debug`.
fn everything_printed(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = format!("{err}\n{err:?}\n");
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    out
}

async fn build(url: &str) -> Result<EventBus, eventflow::EventError> {
    let mut cfg = RedisConfig::new(url);
    cfg.publish_timeout = std::time::Duration::from_secs(2);
    let builder = EventBus::builder().without_registry().redis_config(cfg);
    let debug = format!("{builder:?}");
    assert!(!debug.contains(SECRET), "the builder's Debug: {debug}");
    builder.build().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_checked_at_build_and_never_printed() {
    let Some(server) = OwnRedis::start("secrets", &["--requirepass", SECRET]).await else {
        return;
    };
    // No password: the build says the server wants one.
    let err = build(&server.url(None)).await.expect_err("refused");
    let text = everything_printed(&err);
    assert!(text.contains("requires authentication"), "{text}");

    // A wrong one: refused, and neither password is printed.
    let err = build(&server.url(Some(&format!("default:wrong-{SECRET}"))))
        .await
        .expect_err("refused");
    let text = everything_printed(&err);
    assert!(text.contains("refused the user name or password"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // The right one works, and the bus's Debug hides it.
    let bus = build(&server.url(Some(&format!(":{SECRET}"))))
        .await
        .unwrap();
    let health = bus.health().await;
    assert!(health.reachable, "{health:?}");
    let debug = format!("{bus:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    bus.shutdown().await.unwrap();

    // Other URL forms, on servers that cannot be reached: nothing printed holds the secret.
    for url in [
        format!("redis+unix:///nonexistent/redis.sock?db=0&pass={SECRET}"),
        format!("redis://app:{SECRET}@127.0.0.1:1/0"),
        format!("rediss://:{SECRET}@127.0.0.1:1/0"),
    ] {
        let err = build(&url).await.expect_err("unreachable");
        let text = everything_printed(&err);
        assert!(!text.contains(SECRET), "{url}: {text}");
        assert!(text.contains("***"), "{url}: {text}");
    }
}
