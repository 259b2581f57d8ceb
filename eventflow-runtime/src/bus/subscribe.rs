//! Subscribing handlers on a running bus (earnorm's `register_handler`, basefunctions'
//! `subscribe`), and unsubscribing them.

use std::sync::Arc;

use super::EventBus;
use super::handler::Handler;
use super::routing::Routing;
use crate::error::{Problem, ProblemKind, ValidationError};
use crate::util::lock;

/// A handler subscribed with [`EventBus::subscribe`]. Dropping it leaves the handler
/// subscribed; [`unsubscribe`](Self::unsubscribe) removes it.
#[must_use = "the handler stays subscribed; keep this to unsubscribe it"]
#[derive(Debug)]
pub struct Subscription {
    bus: EventBus,
    name: Arc<str>,
}

impl Subscription {
    /// The subscribed handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the handler, and returns once its deliveries that were running have
    /// finished (retries included). No delivery reaches it after this returns. `false`
    /// when it was no longer subscribed.
    pub async fn unsubscribe(self) -> bool {
        self.bus.unsubscribe(&self.name).await
    }
}

impl EventBus {
    /// Adds a handler to the running bus. Events published from now on (and, on Redis,
    /// entries a worker reads from now on) are routed to it too; deliveries already under
    /// way are not. The routing table is swapped whole, so publishers never wait for it.
    /// The checks of start-up apply, with the same errors: a name another handler of this
    /// bus has, an invalid pattern or invalid options.
    ///
    /// ```
    /// use eventflow_runtime::{EventBus, Handler, HandlerError};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> eventflow_runtime::Result<()> {
    /// let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
    /// let sub = bus.subscribe(Handler::new("audit", "user.*", |_e, _ctx| async {
    ///     Ok::<(), HandlerError>(())
    /// }))?;
    /// assert_eq!(bus.handlers_for("user.created"), ["audit"]);
    /// sub.unsubscribe().await;
    /// assert!(bus.handlers_for("user.created").is_empty());
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, handler: Handler) -> Result<Subscription, ValidationError> {
        let inner = &self.inner;
        let _changing = lock(&inner.changing_routes);
        let current = inner.routing.load_full();
        let mut problems = super::validate::check_handlers(
            current
                .handlers
                .iter()
                .map(|h| {
                    (
                        &*h.name,
                        h.pattern.as_str(),
                        &h.options,
                        String::from("subscribed"),
                    )
                })
                .chain(std::iter::once((
                    handler.name.as_str(),
                    handler.pattern.as_str(),
                    &handler.options,
                    handler.source.clone(),
                ))),
        );
        problems.extend(super::validate::handler_problems(&handler));
        if !problems.is_empty() {
            return Err(ValidationError { problems });
        }
        let slot = inner
            .compile
            .compile(handler)
            .map_err(|reason| ValidationError {
                problems: vec![Problem::general(ProblemKind::InvalidPattern, reason)],
            })?;
        let name = slot.name.clone();
        let mut handlers = current.handlers.clone();
        handlers.push(Arc::new(slot));
        inner.routing.store(Arc::new(Routing::new(handlers)));
        Ok(Subscription {
            bus: self.clone(),
            name,
        })
    }

    /// Removes the handler `name` from the running bus (whether subscribed at run time or
    /// built in), and returns once its running deliveries have finished; `false` when the
    /// bus has no such handler.
    pub async fn unsubscribe(&self, name: &str) -> bool {
        let removed = {
            let _changing = lock(&self.inner.changing_routes);
            let current = self.inner.routing.load_full();
            let Some(removed) = current.named(name).cloned() else {
                return false;
            };
            let rest = current
                .handlers
                .iter()
                .filter(|h| !Arc::ptr_eq(h, &removed))
                .cloned()
                .collect();
            self.inner.routing.store(Arc::new(Routing::new(rest)));
            removed
        };
        removed.liveness.remove_and_wait().await;
        true
    }
}
