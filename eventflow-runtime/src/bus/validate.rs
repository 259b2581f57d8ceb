//! Start-up checks of the handlers, schedules and registrations a bus is built from.

use crate::error::{Problem, ProblemKind};
use std::collections::HashMap;

use super::handler::{Handler, HandlerFn, HandlerOptions};
use crate::executor::Executor;
use crate::pattern::Pattern;

/// What is wrong with a handler's batching settings.
/// What is wrong with one handler's options for its function: a blocking fn on Tokio, a
/// custom executor not named, the Process executor, batch settings that do not fit.
pub(super) fn handler_problems(h: &Handler) -> Vec<Problem> {
    let mut problems = Vec::new();
    if matches!(h.func, HandlerFn::Blocking(_)) && h.options.executor == Executor::Tokio {
        problems.push(Problem::new(ProblemKind::InvalidOption, &h.name, format!(
            "handler `{}` ({}) is a blocking fn and cannot run on the Tokio executor; use ThreadPool or Inline",
            h.name, h.source
        )));
    }
    if h.options.executor == Executor::Custom && h.options.executor_config.custom.is_none() {
        problems.push(Problem::new(ProblemKind::InvalidOption, &h.name, format!(
            "handler `{}` ({}) runs on Executor::Custom but names no executor: set ExecutorConfig::custom(..), or `executor = custom(path)`",
            h.name, h.source
        )));
    }
    if h.options.executor == Executor::Process && !super::process::is_registered(&h.name) {
        problems.push(Problem::new(ProblemKind::InvalidOption, &h.name, format!(
            "handler `{}` ({}) runs on the Process executor, where the child process finds it by its registered name: register it with `#[event_handler(.., executor = Process)]`",
            h.name, h.source
        )));
    }
    if h.options.executor == Executor::Process && matches!(h.func, HandlerFn::Batch { .. }) {
        problems.push(Problem::new(
            ProblemKind::InvalidOption,
            &h.name,
            format!(
                "handler `{}` ({}) is batched; a batch does not run on the Process executor",
                h.name, h.source
            ),
        ));
    }
    let limited = h.options.executor_config.max_memory.is_some()
        || h.options.executor_config.max_cpu_time.is_some();
    if limited && h.options.executor != Executor::Process {
        problems.push(Problem::new(ProblemKind::InvalidOption, &h.name, format!(
            "handler `{}` ({}) sets max_memory or max_cpu_time, which bound child processes: they need the Process executor",
            h.name, h.source
        )));
    }
    problems.extend(batch_problems(h));
    problems
}

pub(super) fn batch_problems(h: &Handler) -> Vec<Problem> {
    let mut problems = Vec::new();
    let batched = matches!(h.func, HandlerFn::Batch { .. });
    match (&h.options.batch, batched) {
        (Some(cfg), true) => {
            if cfg.max_size == 0 {
                problems.push(Problem::new(
                    ProblemKind::InvalidOption,
                    &h.name,
                    format!(
                        "handler `{}` ({}): a batch's max_size must be at least 1",
                        h.name, h.source
                    ),
                ));
            }
            if !matches!(h.options.executor, Executor::Inline | Executor::Tokio) {
                problems.push(Problem::new(ProblemKind::InvalidOption, &h.name, format!(
                    "handler `{}` ({}): a batched handler runs on a tokio task; it takes no executor",
                    h.name, h.source
                )));
            }
        }
        (None, true) => problems.push(Problem::new(
            ProblemKind::InvalidOption,
            &h.name,
            format!(
                "handler `{}` ({}) takes batches but has no batch settings",
                h.name, h.source
            ),
        )),
        (Some(_), false) => problems.push(Problem::new(
            ProblemKind::InvalidOption,
            &h.name,
            format!(
                "handler `{}` ({}) has batch settings but takes one event at a time",
                h.name, h.source
            ),
        )),
        (None, false) => {}
    }
    problems
}

/// Checks a set of handlers (name, pattern, options, where): unique names, valid patterns
/// and options. Shared by the registry and the bus builder.
pub(crate) fn check_handlers<'a>(
    handlers: impl Iterator<Item = (&'a str, &'a str, &'a HandlerOptions, String)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (name, pattern, options, at) in handlers {
        if let Some(first) = seen.get(name) {
            problems.push(Problem::new(
                ProblemKind::DuplicateName,
                name,
                format!("two handlers are named `{name}`: at {first} and at {at}"),
            ));
        } else {
            seen.insert(name, at.clone());
        }
        if let Err(reason) = Pattern::parse(pattern) {
            problems.push(Problem::new(
                ProblemKind::InvalidPattern,
                name,
                format!("handler `{name}` ({at}) has an invalid pattern `{pattern}`: {reason}"),
            ));
        }
        if let Err(reason) = options.retry.validate() {
            problems.push(Problem::new(
                ProblemKind::InvalidOption,
                name,
                format!("handler `{name}` ({at}): {reason}"),
            ));
        }
        if options.concurrency == Some(0) {
            problems.push(Problem::new(
                ProblemKind::InvalidOption,
                name,
                format!("handler `{name}` ({at}): concurrency must be at least 1"),
            ));
        }
        if options.executor_config.max_workers == Some(0) {
            problems.push(Problem::new(
                ProblemKind::InvalidOption,
                name,
                format!("handler `{name}` ({at}): max_workers must be at least 1"),
            ));
        }
        if options.executor_config.max_tasks_per_child == Some(0) {
            problems.push(Problem::new(
                ProblemKind::InvalidOption,
                name,
                format!("handler `{name}` ({at}): max_tasks_per_child must be at least 1"),
            ));
        }
    }
    problems
}

/// A start-up check a subsystem above the bus registers (the store's check of the
/// registered models and hooks), so that the bus runs it at build without naming that
/// subsystem. Each returns its problems, one message each.
pub(crate) struct StartupCheck {
    /// What is checked, for messages.
    pub(crate) name: &'static str,
    /// The check.
    pub(crate) problems: fn() -> Vec<Problem>,
}

inventory::collect!(StartupCheck);

/// The problems of every registered start-up check, in the order of their names.
pub(crate) fn startup_problems() -> Vec<Problem> {
    let mut checks: Vec<&StartupCheck> = inventory::iter::<StartupCheck>.into_iter().collect();
    checks.sort_by_key(|c| c.name);
    checks.into_iter().flat_map(|c| (c.problems)()).collect()
}
