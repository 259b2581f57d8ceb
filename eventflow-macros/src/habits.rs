//! Options as users of the seeds (basefunctions, earnorm, volnux, Kombu) write them, each
//! with what to write here instead: a pointed message rather than "unknown field".

use darling::ast::NestedMeta;

/// `(what a user writes, what to write instead)` for `#[event_handler]`.
pub(crate) const HANDLER: &[(&str, &str)] = &[
    (
        "mode",
        "basefunctions' `mode` is `executor` here: SYNC is `Inline` (the default; \
         `bus.dispatch(..)` waits for the outcome), THREAD is `ThreadPool`, CORELET is \
         `Process` (pipeline steps); CMD is a command step (`StepDef::command`)",
    ),
    (
        "pattern",
        "the pattern comes first, as a string: `#[event_handler(\"user.*\", ...)]`",
    ),
    (
        "event_type",
        "the pattern of event names comes first, as a string: \
         `#[event_handler(\"user.created\", ...)]`",
    ),
    (
        "retry_count",
        "basefunctions' `retry_count` counts retries; eventflow counts attempts, the first \
         included: write `retry(max_attempts = N + 1)`",
    ),
    (
        "max_retries",
        "retries go in `retry(..)`, counted as attempts, the first included: write \
         `retry(max_attempts = N + 1)`",
    ),
    (
        "retries",
        "retries go in `retry(..)`, counted as attempts, the first included: write \
         `retry(max_attempts = N + 1)`",
    ),
    (
        "queue",
        "the queue is the bus's, not a handler's: `EventBus::builder().queue(\"..\")` on \
         Redis",
    ),
];

/// The same inside `retry(..)` (Kombu's retry settings and friends).
pub(crate) const RETRY: &[(&str, &str)] = &[
    (
        "max_retries",
        "Kombu's `max_retries` counts retries; eventflow counts attempts, the first \
         included: write `max_attempts = N + 1`",
    ),
    (
        "retries",
        "eventflow counts attempts, the first included: write `max_attempts = N + 1`",
    ),
    (
        "interval_start",
        "Kombu's `interval_start` is `backoff_factor` here: the first retry's wait, in \
         seconds",
    ),
    (
        "interval_step",
        "Kombu's `interval_step` is `backoff_step` here: seconds added to each next wait \
         (linear backoff)",
    ),
    (
        "interval_max",
        "Kombu's `interval_max` is `max_backoff` here: the longest wait, in seconds",
    ),
    (
        "delay",
        "the first retry's wait is `backoff_factor`, in seconds (doubled for each next \
         one, or grown by `backoff_step`)",
    ),
    (
        "backoff",
        "write `backoff_factor = 0.5` (seconds, doubled for each next retry), and \
         `backoff_step = 1.0` for linear backoff",
    ),
    (
        "exceptions",
        "the errors that retry are `retry_on = [std::io::Error, MyError]`",
    ),
    (
        "retry_for",
        "the errors that retry are `retry_on = [std::io::Error, MyError]`",
    ),
    (
        "autoretry_for",
        "the errors that retry are `retry_on = [std::io::Error, MyError]`",
    ),
];

/// The same for `#[scheduled]`.
pub(crate) const SCHEDULED: &[(&str, &str)] = &[
    (
        "interval",
        "the interval is `every`: `#[scheduled(every = \"30s\")]`",
    ),
    (
        "schedule",
        "write `every = \"30s\"` or `cron = \"0 */5 * * * *\"`",
    ),
    (
        "crontab",
        "the cron expression is `cron`, six or seven fields, seconds first: \
         `cron = \"0 */5 * * * *\"`",
    ),
];

/// Removes from `metas` the options of `habits`, reporting each with its advice.
pub(crate) fn take(
    metas: Vec<NestedMeta>,
    habits: &[(&str, &str)],
    errors: &mut darling::error::Accumulator,
) -> Vec<NestedMeta> {
    metas
        .into_iter()
        .filter(|m| {
            let NestedMeta::Meta(meta) = m else {
                return true;
            };
            let path = meta.path();
            let Some((name, advice)) = habits.iter().find(|(name, _)| path.is_ident(name)) else {
                return true;
            };
            errors.push(
                darling::Error::custom(format!("`{name}` is not an option here: {advice}"))
                    .with_span(path),
            );
            false
        })
        .collect()
}
