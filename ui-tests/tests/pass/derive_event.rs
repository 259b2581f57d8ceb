//! `#[derive(Event)]` on structs, enums and generic types.
use eventflow::prelude::*;

#[derive(Event, Serialize)]
#[event(name = "order.payment.completed")]
struct Named;

#[derive(Event)]
struct HTTPRequestReceived;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shape.changed")]
enum ShapeChanged {
    Circle { r: f64 },
    Square(f64),
}

#[derive(Event)]
#[event(name = "wrapped")]
struct Wrapped<T> {
    inner: T,
}

#[derive(Event)]
#[event(name = "over.ride", crate = "eventflow")]
struct Overridden;

fn main() {
    assert_eq!(Named::NAME, "order.payment.completed");
    assert_eq!(HTTPRequestReceived::NAME, "http_request_received");
    assert_eq!(ShapeChanged::NAME, "shape.changed");
    assert_eq!(<Wrapped<u8> as Event>::NAME, "wrapped");
    assert_eq!(Overridden::NAME, "over.ride");
    let _ = (ShapeChanged::Circle { r: 1.0 }, ShapeChanged::Square(1.0), Wrapped { inner: 1 });
    let reg = eventflow::Registry::global();
    assert!(reg.event("http_request_received").is_some());
    assert!(reg.event("wrapped").is_none(), "generic types are not registered");
}
