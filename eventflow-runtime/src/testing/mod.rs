//! Testing helpers: a [`Recorder`] that captures what a bus publishes and how each
//! handler's delivery ended.

pub use crate::bus::{RecordedOutcome, Recorder};
