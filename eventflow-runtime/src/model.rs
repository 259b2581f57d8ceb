//! Models and their lifecycle hooks (earnorm's `@before_create`, `@after_write`, ...: decorators on an ORM model's methods that run around each write).
//!
//! `#[derive(Model)]` names a type's model events (`user.created`, `user.updated`,
//! `user.deleted`); `#[hooks]` on an impl block, and `#[before_create(User)]` on a free
//! function, register hooks that a [`Store`](crate::store::Store) runs around each write.
//!
//! ## Order
//!
//! | operation | hooks, in order |
//! | --- | --- |
//! | create | `before_write`, `before_create`, *write*, `after_create`, `after_write` |
//! | update | `before_write`, `before_update`, *write*, `after_update`, `after_write` |
//! | delete | `before_delete`, *delete*, `after_delete` |
//!
//! Several hooks of one kind run in a stable order: those of `#[hooks]` impl blocks first,
//! by source file and line of the block and then in declaration order within it, then the
//! free-function hooks by name.
//!
//! ## Errors
//!
//! A `before_*` hook that returns an error vetoes the operation: nothing is written, no
//! after-hook runs, no model event is published, and the caller gets
//! [`StoreError::Vetoed`](crate::store::StoreError::Vetoed) naming the hook. After-hooks
//! run once the write has committed: an after-hook error is logged and counted
//! ([`StoreStats::after_hook_errors`](crate::store::StoreStats)) but does not undo the
//! committed write, and the remaining after-hooks still run.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::Envelope;
use crate::source::SourceLocation;

/// A type stored by a [`Store`](crate::store::Store). Derive it with `#[derive(Model)]`.
pub trait Model: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The model's name: its events are `<NAME>.created`, `.updated`, `.deleted`.
    const NAME: &'static str;
    /// The id, once stored.
    fn id(&self) -> Option<i64>;
    /// Sets the id the store assigned.
    fn set_id(&mut self, id: i64);
}

/// What happened to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelEventKind {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Deleted.
    Deleted,
}

impl ModelEventKind {
    /// `created`, `updated` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelEventKind::Created => "created",
            ModelEventKind::Updated => "updated",
            ModelEventKind::Deleted => "deleted",
        }
    }
}

/// The payload of a model event, published after the write commits. Handlers take it
/// typed: `async fn welcome(event: ModelEvent<User>)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "M: DeserializeOwned"))]
pub struct ModelEvent<M> {
    /// What happened.
    pub kind: ModelEventKind,
    /// The model as written (for a delete: as it was).
    pub model: M,
    /// For an update, the top-level fields whose value changed; empty otherwise.
    pub changed: Vec<String>,
}

impl<M: Model> ModelEvent<M> {
    /// The event's name: `<model>.<kind>`.
    pub fn name(&self) -> String {
        format!("{}.{}", M::NAME, self.kind.as_str())
    }

    pub(crate) fn envelope(self) -> Envelope {
        Envelope::with_payload(
            crate::event::EventName::from(self.name().as_str()),
            crate::event::Payload::typed(self),
        )
    }
}

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookKind {
    /// Before a create or an update.
    BeforeWrite,
    /// Before a create.
    BeforeCreate,
    /// Before an update.
    BeforeUpdate,
    /// Before a delete.
    BeforeDelete,
    /// After a create.
    AfterCreate,
    /// After an update.
    AfterUpdate,
    /// After a create or an update.
    AfterWrite,
    /// After a delete.
    AfterDelete,
}

impl HookKind {
    /// Whether the hook runs before the write (and may veto it).
    pub fn is_before(self) -> bool {
        matches!(
            self,
            HookKind::BeforeWrite
                | HookKind::BeforeCreate
                | HookKind::BeforeUpdate
                | HookKind::BeforeDelete
        )
    }

    /// `before_create`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::BeforeWrite => "before_write",
            HookKind::BeforeCreate => "before_create",
            HookKind::BeforeUpdate => "before_update",
            HookKind::BeforeDelete => "before_delete",
            HookKind::AfterCreate => "after_create",
            HookKind::AfterUpdate => "after_update",
            HookKind::AfterWrite => "after_write",
            HookKind::AfterDelete => "after_delete",
        }
    }
}

/// A store operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
}

impl Operation {
    /// The hooks before the write, in order.
    pub(crate) fn before(self) -> &'static [HookKind] {
        match self {
            Operation::Create => &[HookKind::BeforeWrite, HookKind::BeforeCreate],
            Operation::Update => &[HookKind::BeforeWrite, HookKind::BeforeUpdate],
            Operation::Delete => &[HookKind::BeforeDelete],
        }
    }

    /// The hooks after the write, in order.
    pub(crate) fn after(self) -> &'static [HookKind] {
        match self {
            Operation::Create => &[HookKind::AfterCreate, HookKind::AfterWrite],
            Operation::Update => &[HookKind::AfterUpdate, HookKind::AfterWrite],
            Operation::Delete => &[HookKind::AfterDelete],
        }
    }

    pub(crate) fn event(self) -> ModelEventKind {
        match self {
            Operation::Create => ModelEventKind::Created,
            Operation::Update => ModelEventKind::Updated,
            Operation::Delete => ModelEventKind::Deleted,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
        })
    }
}

/// A hook's error. From a `before_*` hook it vetoes the operation.
#[derive(Debug)]
pub struct HookError {
    message: String,
    veto: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl HookError {
    /// A deliberate refusal: "user has active orders".
    pub fn veto(reason: impl fmt::Display) -> Self {
        HookError {
            message: reason.to_string(),
            veto: true,
            source: None,
        }
    }

    /// A failure with a message.
    pub fn msg(message: impl fmt::Display) -> Self {
        HookError {
            message: message.to_string(),
            veto: false,
            source: None,
        }
    }

    /// Whether the hook refused ([`veto`](Self::veto)) rather than failed.
    pub fn is_veto(&self) -> bool {
        self.veto
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error it was made from, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts, so `?` works in hooks. (`HookError` itself is not a
/// `std::error::Error`, which is what makes this conversion possible.)
impl<E: std::error::Error + Send + Sync + 'static> From<E> for HookError {
    fn from(err: E) -> Self {
        HookError {
            message: err.to_string(),
            veto: false,
            source: Some(Box::new(err)),
        }
    }
}

/// A model type deriving `Model`.
#[derive(Debug)]
pub struct ModelRecord {
    /// The model's name.
    pub name: &'static str,
    /// The Rust type's name.
    pub type_name: &'static str,
    /// Where it was defined.
    pub location: SourceLocation,
}

inventory::collect!(ModelRecord);
