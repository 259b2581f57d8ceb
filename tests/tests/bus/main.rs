//! The bus end to end, with handlers registered by the macros: one module per concern.
#![allow(clippy::unwrap_used)] // test code: a poisoned lock or a failed call should fail the test

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use eventflow::prelude::*;
use eventflow::testing::Recorder;
use eventflow::{EventError, HandlerErrorKind, OutcomeStatus, PublishError};
use eventflow_tests::Log;
use tokio::sync::Semaphore;

#[derive(Event, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[event(name = "user.created")]
struct UserCreated {
    id: u64,
    email: String,
}

#[derive(Event, Clone, Debug, Serialize, Deserialize)]
struct UserDeleted {
    id: u64,
}

mod concurrency;
mod failures;
mod lifecycle;
mod observing;
mod priority;
mod publish_options;
mod publishing;
mod results;
mod retry_policies;
mod signatures;
mod subscribing;
mod timers;
