//! The global registry the macros fill at link time through `inventory`.
//!
//! `#[derive(Event)]` submits an [`EventRecord`], `#[event_handler]` a [`HandlerRecord`],
//! `#[scheduled]` a [`ScheduledJobRecord`].
//! [`Registry::global`] collects them once. A crate whose items nothing references is left
//! out by the linker, and its registrations with it: name such crates with
//! [`link!`](crate::link) in the binary.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use super::handler::{HandlerOptions, Invoke};
use super::scheduler::ScheduledJobRecord;
use super::validate::check_handlers;
use crate::error::{Problem, ProblemKind, ValidationError};
use crate::pattern::validate_name;
use crate::source::SourceLocation;

/// A type deriving `Event`.
#[derive(Debug)]
pub struct EventRecord {
    /// The event's name.
    pub name: &'static str,
    /// The Rust type's name.
    pub type_name: &'static str,
    /// Where it was defined.
    pub location: SourceLocation,
}

/// A function annotated with `#[event_handler]`.
pub struct HandlerRecord {
    /// The handler's name (unique on a bus).
    pub name: &'static str,
    /// The pattern of event names it receives.
    pub pattern: &'static str,
    /// The type of its event parameter, or `Envelope`.
    pub event_type: &'static str,
    /// Its options.
    pub options: HandlerOptions,
    /// How to call it.
    pub invoke: Invoke,
    /// Where it was defined.
    pub location: SourceLocation,
}

inventory::collect!(EventRecord);
inventory::collect!(HandlerRecord);

/// Everything registered in this binary.
pub struct Registry {
    events: Vec<&'static EventRecord>,
    handlers: Vec<&'static HandlerRecord>,
    scheduled: Vec<&'static ScheduledJobRecord>,
}

impl Registry {
    /// The registry of this binary, collected on first use.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let mut events: Vec<_> = inventory::iter::<EventRecord>.into_iter().collect();
            events.sort_by_key(|e| (e.name, e.type_name));
            let mut handlers: Vec<_> = inventory::iter::<HandlerRecord>.into_iter().collect();
            handlers.sort_by_key(|h| h.name);
            let mut scheduled: Vec<_> = inventory::iter::<ScheduledJobRecord>.into_iter().collect();
            scheduled.sort_by_key(|s| s.name);
            Registry {
                events,
                handlers,
                scheduled,
            }
        })
    }

    /// The registered event types, by name.
    pub fn events(&self) -> &[&'static EventRecord] {
        &self.events
    }

    /// The registered handlers, by name.
    pub fn handlers(&self) -> &[&'static HandlerRecord] {
        &self.handlers
    }

    /// The registered scheduled functions, by name.
    pub fn scheduled(&self) -> &[&'static ScheduledJobRecord] {
        &self.scheduled
    }

    /// The handler with this name.
    pub fn handler(&self, name: &str) -> Option<&'static HandlerRecord> {
        self.handlers.iter().copied().find(|h| h.name == name)
    }

    /// The event type with this name.
    pub fn event(&self, name: &str) -> Option<&'static EventRecord> {
        self.events.iter().copied().find(|e| e.name == name)
    }

    /// Checks the registry; the error lists every problem at once.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut problems = self.event_problems();
        problems.extend(check_handlers(self.handlers.iter().map(|h| {
            (
                h.name,
                h.pattern,
                &h.options,
                format!("{}:{}", h.location.file, h.location.line),
            )
        })));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems })
        }
    }

    /// Problems of the registered event types: invalid names, one name used by two types.
    /// Registered handlers that share a name: an error whichever of them a bus takes
    /// (with [`EventBusBuilder::only`](crate::EventBusBuilder::only), link order would
    /// otherwise choose).
    pub(crate) fn duplicate_handler_problems(&self) -> Vec<Problem> {
        check_handlers(self.handlers.iter().map(|h| {
            (
                h.name,
                h.pattern,
                &h.options,
                format!("{}:{}", h.location.file, h.location.line),
            )
        }))
        .into_iter()
        .filter(|p| p.kind == ProblemKind::DuplicateName)
        .collect()
    }

    pub(crate) fn event_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut by_name: HashMap<&str, Vec<&EventRecord>> = HashMap::new();
        for e in &self.events {
            if let Err(reason) = validate_name(e.name) {
                problems.push(Problem::new(
                    ProblemKind::InvalidName,
                    e.name,
                    format!(
                        "event type `{}` has an invalid name `{}`: {reason}",
                        e.type_name, e.name
                    ),
                ));
            }
            by_name.entry(e.name).or_default().push(e);
        }
        let mut dup: Vec<_> = by_name.into_iter().filter(|(_, v)| v.len() > 1).collect();
        dup.sort_by_key(|(n, _)| *n);
        for (name, recs) in dup {
            let types: Vec<String> = recs
                .iter()
                .map(|r| {
                    format!(
                        "`{}` ({}:{})",
                        r.type_name, r.location.file, r.location.line
                    )
                })
                .collect();
            problems.push(Problem::new(
                ProblemKind::DuplicateName,
                name,
                format!(
                    "event name `{name}` is used by {} types: {}",
                    recs.len(),
                    types.join(", ")
                ),
            ));
        }
        problems
    }

    /// A human-readable listing of what is registered, for start-up logs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "eventflow registry: {} event type(s), {} handler(s), {} scheduled function(s)",
            self.events.len(),
            self.handlers.len(),
            self.scheduled.len()
        );
        for e in &self.events {
            let _ = writeln!(out, "  event   {:<30} {}", e.name, e.type_name);
        }
        for h in &self.handlers {
            let _ = writeln!(
                out,
                "  handler {:<30} on {:<20} takes {} ({:?}, {} attempt(s)) at {}:{}",
                h.name,
                h.pattern,
                h.event_type,
                h.options.executor,
                h.options.retry.max_attempts,
                h.location.file,
                h.location.line
            );
        }
        for s in &self.scheduled {
            let _ = writeln!(
                out,
                "  scheduled {:<28} {:?} ({:?}) at {}:{}",
                s.name, s.schedule, s.missed, s.location.file, s.location.line
            );
        }
        out
    }
}

impl std::fmt::Debug for HandlerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerRecord").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}
