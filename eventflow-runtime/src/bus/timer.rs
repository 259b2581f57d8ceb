//! Timers: publish an event once after a delay, or periodically (basefunctions'
//! `TimerThread`).
//!
//! ```
//! use std::time::Duration;
//! use eventflow_runtime::{EventBus, Envelope, MissedTicks, Payload};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> eventflow_runtime::Result<()> {
//! let bus = EventBus::builder().without_registry().allow_unhandled(true).build().await?;
//! let heartbeat = bus.schedule_every(Duration::from_secs(30), MissedTicks::Skip, || {
//!     Envelope::with_payload("system.heartbeat".into(), Payload::json(serde_json::json!({})))
//! });
//! heartbeat.stop();
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::bus::EventBus;
use crate::error::{EventError, PublishError};
use crate::event::Envelope;
use crate::schedule::MissedTicks;

/// A running timer. [`stop`](Self::stop) cancels it; dropping the handle leaves it running
/// until the bus shuts down.
pub struct TimerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl TimerHandle {
    /// Cancels the timer; no event is published after this returns.
    pub fn stop(self) {
        self.task.abort();
    }

    /// Whether the timer has ended (stopped, fired once, or the bus shut down).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

fn ended_by_shutdown(e: &EventError) -> bool {
    matches!(e, EventError::Publish(PublishError::ShutDown { .. }))
}

impl EventBus {
    /// Publishes `envelope` once, after `delay`. Unlike
    /// [`publish_delayed`](EventBus::publish_delayed), the event waits in this process and
    /// can be cancelled with the handle.
    pub fn schedule_once(&self, delay: Duration, envelope: Envelope) -> TimerHandle {
        let bus = self.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = bus.publish_envelope(envelope).await
                && !ended_by_shutdown(&e)
            {
                tracing::error!(error = %e, "eventflow: a scheduled event could not be published");
            }
        });
        TimerHandle { task }
    }

    /// Publishes the envelope `make` returns every `interval`, the first one `interval`
    /// from now, until the handle is stopped or the bus shuts down. A failed publish is
    /// logged and the timer goes on.
    pub fn schedule_every<F>(&self, interval: Duration, missed: MissedTicks, make: F) -> TimerHandle
    where
        F: Fn() -> Envelope + Send + 'static,
    {
        let bus = self.clone();
        let interval = interval.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(match missed {
                MissedTicks::Skip => MissedTickBehavior::Skip,
                MissedTicks::CatchUp => MissedTickBehavior::Burst,
            });
            loop {
                ticks.tick().await;
                match bus.publish_envelope(make()).await {
                    Ok(()) => {}
                    Err(e) if ended_by_shutdown(&e) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "eventflow: a periodic event could not be published")
                    }
                }
            }
        });
        TimerHandle { task }
    }
}

impl std::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerHandle").finish_non_exhaustive()
    }
}
