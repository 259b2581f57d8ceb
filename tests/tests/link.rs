//! A handler crate referenced only through `eventflow::link!` is registered.

eventflow::link!(linked_handlers);

use eventflow::{EventBus, Registry};

#[tokio::test]
async fn linked_crate_handlers_are_registered() {
    let reg = Registry::global();
    assert!(
        reg.handler("linked_ping").is_some(),
        "registry:\n{}",
        reg.describe()
    );
    let bus = EventBus::builder().build().await.unwrap();
    let report = bus
        .dispatch_raw("linked.ping", serde_json::json!(null))
        .await
        .unwrap();
    assert!(report.outcome("linked_ping").unwrap().succeeded());
}
