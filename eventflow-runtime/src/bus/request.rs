//! Requests: publish an event and wait for the one handler's value (basefunctions'
//! `EventResult`, in its SYNC mode "when the result is needed immediately").

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::EventBus;
use super::publish::Via;
use crate::delivery::{Reply, ReplyError};
use crate::event::{Envelope, Event, PublishOptions};

/// How long [`EventBus::request`] waits for the answer unless
/// [`PublishOptions::timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl EventBus {
    /// Publishes `event` and returns the value of the one handler that takes it, as a `T`.
    ///
    /// On the memory bus the handler runs in this process; on a network backend (Redis)
    /// whichever worker takes the event answers through the backend. It is an error when
    /// no handler or more than one handler takes the event, when the handler gives up
    /// (after its retries), when it returns no value or one that is not a `T`, and when no
    /// answer comes within [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// ```
    /// # use eventflow_runtime::*;
    /// # #[derive(Clone, serde::Serialize, serde::Deserialize)] struct Quote { qty: u32 }
    /// # impl Event for Quote { const NAME: &'static str = "quote"; }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = EventBus::builder()
    ///     .handler(Handler::replying("price", "quote", |q: Quote, _ctx| async move {
    ///         Ok::<_, HandlerError>(q.qty * 3)
    ///     }))
    ///     .build()
    ///     .await?;
    /// let price: u32 = bus.request(Quote { qty: 2 }).await?;
    /// assert_eq!(price, 6);
    /// # Ok(()) }
    /// ```
    pub async fn request<T: DeserializeOwned, E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<T, ReplyError> {
        self.request_envelope(Envelope::new(event), PublishOptions::new())
            .await
    }

    /// [`request`](Self::request) with options for this event: its
    /// [`timeout`](PublishOptions::timeout) bounds both each attempt of the handler and the
    /// wait for the answer; a [`delay`](PublishOptions::delay) is waited out first.
    pub async fn request_with<T: DeserializeOwned, E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
        options: PublishOptions,
    ) -> Result<T, ReplyError> {
        self.request_envelope(Envelope::new(event), options).await
    }

    /// [`request_with`](Self::request_with) for a prepared envelope.
    pub async fn request_envelope<T: DeserializeOwned>(
        &self,
        envelope: Envelope,
        options: PublishOptions,
    ) -> Result<T, ReplyError> {
        let timeout = options.timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let (envelope, delay) = options.apply(envelope);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let name = envelope.name.to_string();
        let timed_out = || ReplyError::TimedOut {
            event: name.clone(),
            timeout,
        };
        if self.inner.shared_backend {
            // Another process may have the handler; more than one here is refused at once.
            let routing = self.inner.routing.load_full();
            if let Err(e @ ReplyError::MoreThanOne { .. }) = one_handler(&routing, &envelope) {
                return Err(e);
            }
            let (envelope, _, _) = self.accept(envelope, Via::Backend)?;
            if let Some(asked) = self.inner.backend.request(envelope, timeout) {
                return match asked.await.map_err(crate::error::EventError::from)? {
                    Some(reply) => reply.value(),
                    None => Err(timed_out()),
                };
            }
            return Err(ReplyError::Failed {
                handler: String::new(),
                error: format!(
                    "the `{}` backend carries no replies",
                    self.inner.backend.name()
                ),
            });
        }
        self.request_here(envelope, timeout).await
    }

    /// Delivers a request in this process and takes its one handler's value.
    async fn request_here<T: DeserializeOwned>(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<T, ReplyError> {
        // Refused before it counts as published: a request needs exactly one handler.
        let routing = self.inner.routing.load_full();
        one_handler(&routing, &envelope)?;
        let name = envelope.name.to_string();
        // A handler subscribed in between makes two answers, which the reply refuses.
        let delivery = self.start_dispatch(envelope)?;
        let report =
            tokio::time::timeout(timeout, delivery)
                .await
                .map_err(|_| ReplyError::TimedOut {
                    event: name.clone(),
                    timeout,
                })?;
        match Reply::from_report(&report) {
            Some(reply) => reply.value(),
            None => Err(ReplyError::Failed {
                handler: String::new(),
                error: "the delivery was cancelled by shutdown".to_owned(),
            }),
        }
    }
}

/// Refuses a request that no handler, or more than one, takes.
fn one_handler(routing: &super::routing::Routing, envelope: &Envelope) -> Result<(), ReplyError> {
    let targets = routing.router.lookup(&envelope.name);
    match targets.len() {
        0 => {
            return Err(ReplyError::NoHandler {
                event: envelope.name.to_string(),
            });
        }
        1 => {}
        _ => {
            return Err(ReplyError::MoreThanOne {
                event: envelope.name.to_string(),
                handlers: targets
                    .iter()
                    .map(|&i| routing.handlers[i].name.to_string())
                    .collect(),
            });
        }
    }
    Ok(())
}
