//! Without `eventflow::link!`, a handler crate nothing references is dropped by the linker,
//! even though it is a dependency. (This is what `link!` exists for.)

use eventflow::Registry;

#[test]
fn unreferenced_crate_handlers_are_dropped() {
    assert!(Registry::global().handler("linked_ping").is_none());
}
