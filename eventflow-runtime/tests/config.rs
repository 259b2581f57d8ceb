//! Configuration as data: reading the settings types from TOML, JSON and values, with
//! errors that name the key, and applying a `BusConfig` to a bus.
#![allow(clippy::unwrap_used)] // test code

use std::time::Duration;

use eventflow_runtime::config::{from_json, from_toml, from_value};
use eventflow_runtime::health::HealthConfig;
use eventflow_runtime::pipeline::{EvaluationState, StepOptions};
use eventflow_runtime::{
    BusConfig, EventBus, Executor, ExecutorConfig, Handler, HandlerError, RetryPolicy,
};

#[test]
fn every_settings_type_reads_from_toml_and_json() {
    let e: ExecutorConfig = from_toml("max_workers = 4\nthread_name_prefix = \"pay-\"").unwrap();
    assert_eq!(e.max_workers, Some(4));
    assert_eq!(e.thread_name_prefix.as_deref(), Some("pay-"));
    let s: StepOptions = from_toml(
        "executor = \"ThreadPool\"\ntimeout = \"2s\"\nstop_on_error = true\nevaluation = \"FailureForPartialError\"\n[retry]\nmax_attempts = 2",
    )
    .unwrap();
    assert_eq!(s.executor, Executor::ThreadPool);
    assert_eq!(s.timeout, Some(Duration::from_secs(2)));
    assert!(s.stop_on_error);
    assert_eq!(s.evaluation, EvaluationState::FailureForPartialError);
    assert_eq!(s.retry.max_attempts, 2);
    let h: HealthConfig = from_json(r#"{"timeout": "250ms", "max_pending": 10}"#).unwrap();
    assert_eq!(h.timeout, Duration::from_millis(250));
    assert_eq!(h.max_pending, Some(10));
    assert_eq!(
        h.check_interval,
        Duration::from_secs(60),
        "the default stays"
    );
    let r: RetryPolicy =
        from_value(serde_json::json!({"max_attempts": 3, "interval_step": 1.0})).unwrap();
    assert_eq!(r.delay(3), Duration::from_millis(2500));
}

#[test]
fn mistakes_name_the_key_and_the_nearest_known_one() {
    let err = from_toml::<BusConfig>("[handlers.x]\nconcurency = 3")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown key `concurency`"), "{err}");
    assert!(err.contains("did you mean `concurrency`?"), "{err}");
    assert!(err.contains("handlers.x"), "{err}");
    let err =
        from_value::<BusConfig>(serde_json::json!({"default_retry": {"max_attempts": "three"}}))
            .unwrap_err()
            .to_string();
    assert!(err.contains("`default_retry.max_attempts`"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
    let err = from_json::<StepOptions>(r#"{"timeout": "soon"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`timeout`") && err.contains("is not a duration"),
        "{err}"
    );
    let err = from_toml::<BusConfig>("[backend]\nurl = \"redis://:pw@host\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("takes no [backend] section"), "{err}");
    assert!(!err.contains(":pw@"), "{err}");
}

fn failing(name: &str) -> Handler {
    Handler::new(name, "cfg.*", |_e, _ctx| async {
        Err::<(), _>(HandlerError::msg("down"))
    })
}

#[tokio::test]
async fn a_bus_config_applies_defaults_and_overrides_and_code_after_it_wins() {
    let cfg: BusConfig = from_toml(
        r#"
        default_timeout = "5s"
        [default_retry]
        max_attempts = 2
        backoff_factor = 0.0
        [headers]
        service = "billing"
        [handlers.overridden]
        retry = { max_attempts = 4, backoff_factor = 0.0 }
        priority = 7
        "#,
    )
    .unwrap();
    let bus = EventBus::builder()
        .without_registry()
        .handler(failing("plain"))
        .handler(failing("overridden").retry(RetryPolicy::attempts(1)))
        .config(cfg.clone())
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("cfg.one", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("plain").unwrap().attempts, 2);
    assert_eq!(report.outcome("overridden").unwrap().attempts, 4);
    // The overridden handler runs first: its priority came from the configuration.
    assert_eq!(&*report.outcomes[0].handler, "overridden");
    bus.shutdown().await.unwrap();

    // A builder method after `config` wins over it.
    let bus = EventBus::builder()
        .without_registry()
        .handler(failing("plain"))
        .handler(failing("overridden"))
        .config(cfg.clone())
        .default_retry(RetryPolicy::attempts(3).backoff(0.0, 0.0))
        .build()
        .await
        .unwrap();
    let report = bus
        .dispatch_raw("cfg.one", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(report.outcome("plain").unwrap().attempts, 3);
    bus.shutdown().await.unwrap();

    // Settings for a handler the bus does not have are refused.
    let err = EventBus::builder()
        .without_registry()
        .handler(failing("plain"))
        .config(cfg)
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("handler `overridden`, which this bus does not have"),
        "{err}"
    );
}
