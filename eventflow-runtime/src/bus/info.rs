//! What a bus says about its handlers, for tools that show it (the admin app).

use std::time::Duration;

use super::EventBus;
use super::handler::HandlerFn;
use crate::executor::Executor;
use crate::retry::RetryPolicy;

/// A handler's settings, as the bus runs it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HandlerInfo {
    /// Its name.
    pub name: String,
    /// The pattern of the events it takes.
    pub pattern: String,
    /// Where it runs.
    pub executor: Executor,
    /// Its retry policy (after the bus's defaults).
    pub retry: RetryPolicy,
    /// The bound on one attempt, if any.
    pub timeout: Option<Duration>,
    /// Deliveries running at once at most, if bounded.
    pub concurrency: Option<usize>,
    /// Its priority among the handlers of one event.
    pub priority: i32,
    /// Whether it takes events in batches.
    pub batched: bool,
}

impl EventBus {
    /// Every handler's settings, in the order they run for one event.
    pub fn handler_info(&self) -> Vec<HandlerInfo> {
        let routing = self.inner.routing.load();
        routing
            .handlers
            .iter()
            .map(|h| HandlerInfo {
                name: h.name.to_string(),
                pattern: h.pattern.as_str().to_owned(),
                executor: h.options.executor,
                retry: h.options.retry,
                timeout: h.options.timeout,
                concurrency: h.options.concurrency,
                priority: h.options.priority,
                batched: matches!(h.func, HandlerFn::Batch { .. }),
            })
            .collect()
    }

    /// One dead letter, if it is there (it stays in the store).
    pub async fn dead_letter(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<crate::dead_letter::DeadLetter>, crate::error::EventError> {
        Ok(self.inner.dead_letters.get(id).await?)
    }
}

impl EventBus {
    /// The backend's short name (`memory`, `redis`).
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }
}

impl EventBus {
    /// A page of the events waiting for their time (delayed publishes, and on Redis
    /// scheduled retries), soonest first; see [`Backend::delayed`](crate::Backend::delayed).
    pub async fn delayed(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<crate::backend::DelayedPage, crate::error::EventError> {
        Ok(self.inner.backend.delayed(cursor, limit).await?)
    }

    /// Cancels the waiting event `id`: it will not be delivered; `false` when none waits.
    pub async fn cancel_delayed(
        &self,
        id: crate::event::EventId,
    ) -> Result<bool, crate::error::EventError> {
        Ok(self.inner.backend.cancel_delayed(id).await?)
    }
}

impl EventBus {
    /// The workers reading the queue (Redis: the consumers of the group, over every lane).
    pub async fn workers(
        &self,
    ) -> Result<Vec<crate::backend::WorkerInfo>, crate::error::EventError> {
        Ok(self.inner.backend.workers().await?)
    }
}
