//! Lifecycle hooks as the store runs them: their context, the registered records, and
//! their running order. The rules are in [`model`](crate::model).

use std::any::{Any, TypeId};

use serde::Serialize;

use crate::bus::EventBus;
use crate::error::{EventError, Problem, ProblemKind};
use crate::event::Event;
use crate::model::{HookError, HookKind, ModelRecord, Operation};
use crate::source::SourceLocation;
use crate::util::BoxFuture;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::{Store, StoreError, bump};
use crate::executor::panic_message;
use crate::model::Model;

/// What a hook gets besides the model: the operation, the store and the bus.
#[derive(Clone)]
pub struct HookContext {
    pub(crate) operation: Operation,
    pub(crate) kind: HookKind,
    pub(crate) store: Store,
}

impl HookContext {
    /// The operation being run.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The hook's kind.
    pub fn kind(&self) -> HookKind {
        self.kind
    }

    /// The store (reads see committed data, not the running transaction's writes).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bus the store publishes model events on.
    pub fn bus(&self) -> &EventBus {
        self.store.bus()
    }

    /// Publishes an event now (not deferred to the commit).
    pub async fn publish<E: Event + Serialize + Send + Sync>(
        &self,
        event: E,
    ) -> Result<(), EventError> {
        crate::bus::Publisher::new(self.store.bus(), None)
            .publish(event)
            .await
    }
}

/// A hook that may change the model (`&mut self`).
pub type MutHook = for<'a> fn(
    &'a mut (dyn Any + Send + Sync),
    &'a HookContext,
) -> BoxFuture<'a, Result<(), HookError>>;
/// A hook that reads the model (`&self`).
pub type RefHook = for<'a> fn(
    &'a (dyn Any + Send + Sync),
    &'a HookContext,
) -> BoxFuture<'a, Result<(), HookError>>;

/// How a registered hook is called.
#[derive(Clone, Copy)]
pub enum HookInvoke {
    /// Takes `&mut self` (only before the write).
    Mut(MutHook),
    /// Takes `&self`.
    Ref(RefHook),
}

/// A hook registered by `#[hooks]` or a free-function hook attribute.
pub struct HookRecord {
    /// `Type::method` or the function's path.
    pub name: &'static str,
    /// The model's type.
    pub model: fn() -> TypeId,
    /// The model's name (for messages).
    pub model_name: &'static str,
    /// When it runs.
    pub kind: HookKind,
    /// Its place in its `#[hooks]` block, or `None` for a free function.
    pub position: Option<u32>,
    /// How to call it.
    pub invoke: HookInvoke,
    /// Where it was defined (for `#[hooks]`, the impl block).
    pub location: SourceLocation,
}

inventory::collect!(HookRecord);

type Chains = std::collections::HashMap<(TypeId, HookKind), Vec<&'static HookRecord>>;

/// The registered hooks of one model and kind, in running order. The chains are built once,
/// from the registry, on first use.
pub(super) fn hooks_for(model: TypeId, kind: HookKind) -> &'static [&'static HookRecord] {
    static CHAINS: std::sync::OnceLock<Chains> = std::sync::OnceLock::new();
    let chains = CHAINS.get_or_init(|| {
        let mut chains = Chains::new();
        for h in inventory::iter::<HookRecord> {
            chains.entry(((h.model)(), h.kind)).or_default().push(h);
        }
        for hooks in chains.values_mut() {
            hooks.sort_by(|a, b| match (a.position, b.position) {
                (Some(pa), Some(pb)) => (a.location.file, a.location.line, pa).cmp(&(
                    b.location.file,
                    b.location.line,
                    pb,
                )),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.name.cmp(b.name),
            });
        }
        chains
    });
    chains.get(&(model, kind)).map_or(&[], Vec::as_slice)
}

/// Problems of the registered models: invalid or duplicate names, `&mut` after-hooks.
fn model_problems() -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: std::collections::HashMap<&str, &ModelRecord> = Default::default();
    for m in inventory::iter::<ModelRecord> {
        if let Err(reason) = crate::pattern::validate_name(m.name) {
            problems.push(Problem::new(
                ProblemKind::InvalidName,
                m.name,
                format!(
                    "model `{}` has an invalid name `{}`: {reason}",
                    m.type_name, m.name
                ),
            ));
        }
        if let Some(first) = seen.insert(m.name, m) {
            problems.push(Problem::new(
                ProblemKind::DuplicateName,
                m.name,
                format!(
                    "model name `{}` is used by `{}` and `{}`",
                    m.name, first.type_name, m.type_name
                ),
            ));
        }
    }
    for h in inventory::iter::<HookRecord> {
        if !h.kind.is_before() && matches!(h.invoke, HookInvoke::Mut(_)) {
            problems.push(Problem::new(
                ProblemKind::InvalidHook,
                h.name,
                format!(
                    "hook `{}` ({}) takes the model mutably after the write",
                    h.name,
                    h.kind.as_str()
                ),
            ));
        }
    }
    problems
}

inventory::submit! {
    crate::bus::StartupCheck {name: "models and hooks", problems: model_problems }
}

async fn call_hook(
    invoke: HookInvoke,
    model: &mut (dyn Any + Send + Sync),
    ctx: &HookContext,
) -> Result<(), HookError> {
    let fut = match invoke {
        HookInvoke::Mut(f) => f(model, ctx),
        HookInvoke::Ref(f) => f(&*model, ctx),
    };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(p) => Err(HookError::msg(format!(
            "the hook panicked: {}",
            panic_message(&*p)
        ))),
    }
}

pub(super) async fn run_before<M: Model>(
    store: &Store,
    op: Operation,
    model: &mut M,
) -> Result<(), StoreError> {
    for &kind in op.before() {
        for h in hooks_for(TypeId::of::<M>(), kind) {
            let ctx = HookContext {
                operation: op,
                kind,
                store: store.clone(),
            };
            if let Err(e) = call_hook(h.invoke, model, &ctx).await {
                return Err(StoreError::Vetoed {
                    hook: h.name.to_owned(),
                    model: M::NAME,
                    operation: op,
                    message: e.message().to_owned(),
                    deliberate: e.is_veto(),
                });
            }
        }
    }
    Ok(())
}

pub(super) async fn run_after<M: Model>(store: &Store, op: Operation, model: &M) {
    // After-hooks take `&self`; a copy keeps the `&mut` entry point from changing the
    // model the caller got back.
    let mut copy = model.clone();
    for &kind in op.after() {
        for h in hooks_for(TypeId::of::<M>(), kind) {
            let ctx = HookContext {
                operation: op,
                kind,
                store: store.clone(),
            };
            if let Err(e) = call_hook(h.invoke, &mut copy, &ctx).await {
                bump(&store.inner.counters.after_hook_errors);
                tracing::error!(hook = h.name, model = M::NAME, operation = %op, error = %e,
                    "eventflow: after-hook failed; the write stays committed");
            }
        }
    }
}

impl std::fmt::Debug for HookContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookContext").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HookInvoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookInvoke").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookRecord").finish_non_exhaustive()
    }
}
