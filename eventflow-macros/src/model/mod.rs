//! `#[derive(Model)]` and the lifecycle-hook attributes.

mod derive;
mod hooks;

pub(crate) use derive::derive_model;
pub(crate) use hooks::{hook_fn, hooks};
