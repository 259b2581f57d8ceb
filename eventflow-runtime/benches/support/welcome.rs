//! The event and handler the dispatch benchmarks send: one typed event, one async handler
//! doing a little work on it.

use std::sync::atomic::{AtomicU64, Ordering};

use eventflow_runtime::{Event, HandlerError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UserCreated {
    pub id: u64,
    pub email: String,
}

impl Event for UserCreated {
    const NAME: &'static str = "user.created";
}

pub(crate) static WELCOMED: AtomicU64 = AtomicU64::new(0);

pub(crate) async fn send_welcome(event: UserCreated) -> Result<(), HandlerError> {
    if event.email.contains('@') {
        WELCOMED.fetch_add(event.id, Ordering::Relaxed);
    }
    Ok(())
}
