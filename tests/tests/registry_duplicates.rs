//! A binary whose registry has two handlers with one name and two event types with one
//! name: start-up fails with one error that lists both problems.

use eventflow::prelude::*;

mod billing {
    use super::*;

    #[derive(Event, Clone, Debug, Serialize, Deserialize)]
    #[event(name = "invoice.paid")]
    /// First type named `invoice.paid`.
    pub(crate) struct InvoicePaid;

    /// First handler named `notify`.
    #[event_handler("invoice.*", name = "notify")]
    pub(crate) async fn notify(_e: &Envelope) {}
}

mod shipping {
    use super::*;

    #[derive(Event, Clone, Debug, Serialize, Deserialize)]
    #[event(name = "invoice.paid")]
    /// Second type named `invoice.paid`.
    pub(crate) struct AlsoInvoicePaid;

    /// Second handler named `notify`.
    #[event_handler("shipment.*", name = "notify")]
    pub(crate) async fn notify(_e: &Envelope) {}
}

#[tokio::test]
async fn start_up_lists_every_duplicate() {
    let _types = (billing::InvoicePaid, shipping::AlsoInvoicePaid);
    let err = eventflow::Registry::global().validate().unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("event name `invoice.paid` is used by 2 types"),
        "{text}"
    );
    assert!(
        text.contains("InvoicePaid") && text.contains("AlsoInvoicePaid"),
        "{text}"
    );
    assert!(text.contains("two handlers are named `notify`"), "{text}");
    // The same problems as data: their kind and the name each is about.
    let mut named: Vec<(eventflow::ProblemKind, Option<&str>)> = err
        .problems
        .iter()
        .map(|p| (p.kind, p.name.as_deref()))
        .collect();
    named.sort_by_key(|(_, n)| n.map(str::to_owned));
    assert_eq!(
        named,
        [
            (eventflow::ProblemKind::DuplicateName, Some("invoice.paid")),
            (eventflow::ProblemKind::DuplicateName, Some("notify")),
        ],
        "{err}"
    );
    assert_eq!(
        err.of_kind(eventflow::ProblemKind::DuplicateName).count(),
        2
    );

    let Err(EventError::Validation(v)) = EventBus::builder().build().await else {
        panic!("the bus must refuse to start");
    };
    assert_eq!(v.problems.len(), 2, "{v}");
    // Taking one of the two by name does not let link order choose.
    let Err(EventError::Validation(v)) = EventBus::builder().only(["notify"]).build().await else {
        panic!("`only` must not pick one of two handlers with one name");
    };
    assert!(
        v.of_kind(eventflow::ProblemKind::DuplicateName)
            .any(|p| p.name.as_deref() == Some("notify")),
        "{v}"
    );

    // A bus that does not use the registry is not affected by it.
    let bus = EventBus::builder()
        .without_registry()
        .allow_unhandled(true)
        .build()
        .await;
    assert!(bus.is_ok());
}
