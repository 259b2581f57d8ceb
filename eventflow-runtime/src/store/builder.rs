//! Opening a store: its table prefix, its outbox relay, and its driver.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::doc::check_identifier;
use super::{
    Counters, Inner, MemoryDriver, Store, StoreDriver, StoreError, registered_tables, relay,
    warm_hooks,
};
use crate::bus::EventBus;

/// Options of a store; see [`Store::builder`].
#[must_use]
pub struct StoreBuilder {
    bus: EventBus,
    prefix: String,
    relay: bool,
    relay_interval: Duration,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("prefix", &self.prefix)
            .field("relay", &self.relay)
            .field("relay_interval", &self.relay_interval)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    pub(super) fn new(bus: EventBus) -> Self {
        StoreBuilder {
            bus,
            prefix: "eventflow_".into(),
            relay: true,
            relay_interval: Duration::from_millis(500),
        }
    }

    /// Prefix of the store's tables (default `eventflow_`): letters, digits, `_`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The prefix set so far (what a driver names its outbox table with).
    pub fn table_prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs the outbox relay (default on). Off, events wait in the outbox until a store
    /// with a relay, or [`Store::relay_now`], publishes them.
    pub fn relay(mut self, on: bool) -> Self {
        self.relay = on;
        self
    }

    /// How often the relay looks for unsent events besides being woken by each commit
    /// (default 500ms).
    pub fn relay_interval(mut self, every: Duration) -> Self {
        self.relay_interval = every;
        self
    }

    /// An in-memory store.
    pub fn memory(self) -> Store {
        self.open(Box::new(MemoryDriver::new()))
    }

    /// A store on `driver`: prepares its tables (the outbox, and those of the registered
    /// models) and starts the outbox relay when the driver has an outbox.
    pub async fn driver(self, driver: impl StoreDriver) -> Result<Store, StoreError> {
        check_identifier(&self.prefix)?;
        let relay = self.relay;
        let interval = self.relay_interval;
        let store = self.open(Box::new(driver));
        let tables = registered_tables(&store.inner.prefix);
        store.inner.driver.prepare(&tables).await?;
        if relay && store.inner.driver.has_outbox() {
            tokio::spawn(relay::relay_loop(
                Arc::downgrade(&store.inner),
                store.inner.relay.clone(),
                store.inner.stop.clone(),
                interval,
            ));
            // Events a previous process left in the outbox go out now.
            store.inner.relay.notify_one();
        }
        Ok(store)
    }

    fn open(self, driver: Box<dyn StoreDriver>) -> Store {
        warm_hooks();
        Store {
            inner: Arc::new(Inner {
                bus: self.bus,
                driver,
                prefix: self.prefix,
                counters: Counters::default(),
                relay: Arc::new(Notify::new()),
                stop: CancellationToken::new(),
            }),
        }
    }
}
