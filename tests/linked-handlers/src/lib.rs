//! A crate that only registers a handler; binaries keep it with `eventflow::link!`.

use eventflow::prelude::*;

mod inner {
    use super::*;

    /// Registered from a submodule of a crate that nothing else references.
    #[event_handler("linked.ping", name = "linked_ping")]
    pub(crate) async fn linked_ping(_event: &Envelope) -> eventflow::Result<()> {
        Ok(())
    }
}
