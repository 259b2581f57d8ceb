//! The attribute model: what `#[event(...)]` and `#[event_handler(...)]` accept, parsed
//! with darling and validated into plain values. Nothing here generates code.

use darling::util::SpannedValue;
use darling::{FromDeriveInput, FromMeta};
use syn::{Expr, ExprLit, Lit, UnOp};

use crate::names;

mod retry;
pub(crate) use retry::*;

/// `#[event(...)]` on a type deriving `Event`.
#[derive(FromDeriveInput)]
#[darling(attributes(event), supports(struct_any, enum_any))]
pub(crate) struct EventInput {
    pub ident: syn::Ident,
    pub generics: syn::Generics,
    pub name: Option<SpannedValue<String>>,
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
    /// Pipeline-event settings: any of them makes the type a pipeline event.
    #[darling(flatten)]
    pub step: StepArgs,
}

/// The settings of a pipeline event: `#[event(...)]` on a `Process` type or a function.
#[derive(FromMeta, Default)]
pub(crate) struct StepArgs {
    pub pipeline: darling::util::Flag,
    pub executor: Option<ExecutorArg>,
    pub executor_config: Option<ExecutorConfigArgs>,
    pub retry: Option<RetrySpec>,
    pub evaluation: Option<syn::Path>,
    pub stop_on_error: darling::util::Flag,
    pub stop_on_success: darling::util::Flag,
    pub stop_on_exception: darling::util::Flag,
    pub timeout: Option<DurationText>,
    pub goto: Option<Expr>,
}

impl StepArgs {
    /// `goto = [3, 5]`, checked.
    pub(crate) fn gotos(&self, errors: &mut darling::error::Accumulator) -> Vec<u32> {
        let Some(e) = &self.goto else {
            return Vec::new();
        };
        let Expr::Array(arr) = e else {
            errors.push(
                darling::Error::custom("`goto` lists descriptors: `goto = [3, 5]`").with_span(e),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for el in &arr.elems {
            match positive_int(el, "a goto descriptor") {
                Ok(n) if (2..=u32::MAX as u64).contains(&n) => out.push(n as u32),
                Ok(_) => errors.push(
                    darling::Error::custom(
                        "descriptors 0 and 1 are the failure and success branches; goto \
                         descriptors start at 2",
                    )
                    .with_span(el),
                ),
                Err(e) => errors.push(e),
            }
        }
        out
    }

    /// Whether any pipeline setting is given.
    pub(crate) fn any(&self) -> bool {
        self.pipeline.is_present()
            || self.executor.is_some()
            || self.executor_config.is_some()
            || self.retry.is_some()
            || self.evaluation.is_some()
            || self.stop_on_error.is_present()
            || self.stop_on_success.is_present()
            || self.stop_on_exception.is_present()
            || self.timeout.is_some()
            || self.goto.is_some()
    }
}

const EVALUATIONS: &[&str] = &[
    "SuccessOnAllEventsSuccess",
    "FailureForPartialError",
    "SuccessForPartialSuccess",
    "FailureForAllEventsFailure",
];

/// An evaluation state's name, checked.
pub(crate) fn evaluation(path: &syn::Path) -> darling::Result<String> {
    let name = path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    if EVALUATIONS.contains(&name.as_str()) {
        return Ok(name);
    }
    let lower = name.to_lowercase().replace('_', "");
    let hint = EVALUATIONS
        .iter()
        .find(|e| {
            let e = e.to_lowercase();
            e == lower || similar(&e, &lower)
        })
        .map(|e| format!("; did you mean `{e}`?"))
        .unwrap_or_default();
    Err(darling::Error::custom(format!(
        "unknown evaluation state `{name}`: expected one of `{}`{hint}",
        EVALUATIONS.join("`, `")
    ))
    .with_span(path))
}

/// `#[event_handler(pattern, ...)]`, after the leading pattern literal.
#[derive(FromMeta, Default)]
pub(crate) struct HandlerArgs {
    pub name: Option<SpannedValue<String>>,
    pub retry: Option<RetrySpec>,
    pub timeout: Option<DurationText>,
    pub executor: Option<ExecutorArg>,
    pub executor_config: Option<ExecutorConfigArgs>,
    pub priority: Option<Expr>,
    pub concurrency: Option<Expr>,
    pub filter: Option<syn::Path>,
    pub batch: Option<BatchArgs>,
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
}

/// `batch(max_size = 100, max_wait = "50ms")`.
#[derive(FromMeta)]
pub(crate) struct BatchArgs {
    pub max_size: Expr,
    pub max_wait: DurationText,
}

impl BatchArgs {
    /// (max_size, max_wait in nanoseconds).
    pub(crate) fn validate(&self, errors: &mut darling::error::Accumulator) -> Option<(u64, u64)> {
        let size = errors.handle(positive_int(&self.max_size, "max_size"));
        let wait = errors.handle(names::parse_duration(&self.max_wait).map_err(|reason| {
            darling::Error::custom(format!(
                "cannot parse max_wait `{}`: {reason}",
                self.max_wait.as_str()
            ))
            .with_span(&self.max_wait.span())
        }));
        Some((size?, wait?))
    }
}

/// `#[scheduled(every = "30s" | cron = "...", ...)]`.
#[derive(FromMeta, Default)]
pub(crate) struct ScheduledArgs {
    pub every: Option<DurationText>,
    pub cron: Option<SpannedValue<String>>,
    pub name: Option<SpannedValue<String>>,
    pub missed: Option<syn::Path>,
    pub timeout: Option<DurationText>,
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
}

/// `missed = Skip | CatchUp`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Missed {
    Skip,
    CatchUp,
}

pub(crate) fn missed(path: &syn::Path) -> darling::Result<Missed> {
    let name = path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    match name.as_str() {
        "Skip" => Ok(Missed::Skip),
        "CatchUp" => Ok(Missed::CatchUp),
        other => {
            let lower = other.to_lowercase().replace('_', "");
            let hint = if lower == "catchup" || similar(&lower, "catchup") {
                "; did you mean `CatchUp`?"
            } else if similar(&lower, "skip") {
                "; did you mean `Skip`?"
            } else {
                ""
            };
            Err(darling::Error::custom(format!(
                "unknown missed-ticks policy `{other}`: expected `Skip` or `CatchUp`{hint}"
            ))
            .with_span(path))
        }
    }
}

/// A duration written in an attribute: a string with its unit (`"30s"`). A bare number
/// is refused with how to write it.
pub(crate) struct DurationText(pub(crate) SpannedValue<String>);

impl FromMeta for DurationText {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(DurationText(SpannedValue::new(s.value(), s.span()))),
            Expr::Lit(ExprLit {
                lit: Lit::Int(_) | Lit::Float(_),
                ..
            }) => Err(darling::Error::custom(
                "a duration is a string with its unit: `\"30s\"`, `\"500ms\"`, `\"2m\"` or `\"1h\"`",
            )
            .with_span(expr)),
            other => Err(darling::Error::custom(
                "a duration is a string with its unit, such as `\"30s\"`",
            )
            .with_span(other)),
        }
    }
}

impl std::ops::Deref for DurationText {
    type Target = SpannedValue<String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// `executor_config(max_workers = 4, max_tasks_per_child = 50, thread_name_prefix = "x-")`.
#[derive(FromMeta, Default)]
pub(crate) struct ExecutorConfigArgs {
    pub max_workers: Option<Expr>,
    pub max_tasks_per_child: Option<Expr>,
    pub thread_name_prefix: Option<SpannedValue<String>>,
    pub max_memory: Option<SpannedValue<String>>,
    pub max_cpu_time: Option<SpannedValue<String>>,
}

/// A name given in an attribute (`name = "..."`), checked as an event name; a problem is
/// reported on it as an invalid `what` name.
pub(crate) fn given_name(
    n: &SpannedValue<String>,
    what: &str,
    errors: &mut darling::error::Accumulator,
) -> String {
    if let Err(reason) = names::check(n, false) {
        errors.push(
            darling::Error::custom(format!("invalid {what} name `{}`: {reason}", &**n))
                .with_span(&n.span()),
        );
    }
    (**n).clone()
}

/// The executors a handler may name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ExecutorKind {
    Inline,
    Tokio,
    ThreadPool,
    Process,
    /// `custom(path)`: the user's executor, made by the `fn` at `path`.
    Custom,
}

/// What `executor = ...` names: one of ours by name, or `custom(path)`.
pub(crate) struct ExecutorArg(pub(crate) Expr);

impl FromMeta for ExecutorArg {
    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        Ok(ExecutorArg(expr.clone()))
    }
}

impl quote::ToTokens for ExecutorArg {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        self.0.to_tokens(tokens)
    }
}

impl ExecutorArg {
    /// The path of `custom(path)`, the `fn() -> CustomExecutor` that makes the executor.
    pub(crate) fn custom_path(&self) -> Option<&syn::Path> {
        match &self.0 {
            Expr::Call(c) if matches!(&*c.func, Expr::Path(f) if f.path.is_ident("custom")) => {
                match c.args.first() {
                    Some(Expr::Path(p)) if c.args.len() == 1 => Some(&p.path),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

const EXECUTORS: &[(&str, ExecutorKind)] = &[
    ("Inline", ExecutorKind::Inline),
    ("Tokio", ExecutorKind::Tokio),
    ("ThreadPool", ExecutorKind::ThreadPool),
    ("Process", ExecutorKind::Process),
];

/// Validated executor settings.
#[derive(Default)]
pub(crate) struct ExecutorSettings {
    pub max_workers: Option<usize>,
    pub max_tasks_per_child: Option<usize>,
    pub thread_name_prefix: Option<String>,
    /// Bytes.
    pub max_memory: Option<u64>,
    /// Nanoseconds.
    pub max_cpu_time: Option<u64>,
    /// Where a resource limit was written, to report it when the executor has none.
    pub limit_span: Option<proc_macro2::Span>,
}

/// A number written in an attribute, with its sign and span.
fn number(expr: &Expr, what: &str) -> darling::Result<(f64, bool)> {
    let (neg, inner) = match expr {
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => (true, &*u.expr),
        other => (false, other),
    };
    let value = match inner {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => (
            i.base10_parse::<f64>().map_err(darling::Error::custom)?,
            true,
        ),
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => (
            f.base10_parse::<f64>().map_err(darling::Error::custom)?,
            false,
        ),
        _ => {
            return Err(
                darling::Error::custom(format!("`{what}` must be a number")).with_span(expr)
            );
        }
    };
    Ok((if neg { -value.0 } else { value.0 }, value.1))
}

pub(crate) fn non_negative_float(expr: &Expr, what: &str) -> darling::Result<f64> {
    let (v, _) = number(expr, what)?;
    if v < 0.0 || !v.is_finite() {
        return Err(darling::Error::custom(format!(
            "`{what}` must be zero or more seconds, not {v}"
        ))
        .with_span(expr));
    }
    Ok(v)
}

pub(crate) fn positive_int(expr: &Expr, what: &str) -> darling::Result<u64> {
    let (v, is_int) = number(expr, what)?;
    if !is_int {
        return Err(
            darling::Error::custom(format!("`{what}` must be a whole number")).with_span(expr),
        );
    }
    if v < 1.0 {
        return Err(
            darling::Error::custom(format!("`{what}` must be at least 1, not {v}")).with_span(expr),
        );
    }
    Ok(v as u64)
}

pub(crate) fn int(expr: &Expr, what: &str) -> darling::Result<i32> {
    let (v, is_int) = number(expr, what)?;
    if !is_int || v < i32::MIN as f64 || v > i32::MAX as f64 {
        return Err(
            darling::Error::custom(format!("`{what}` must be a whole number (i32)"))
                .with_span(expr),
        );
    }
    Ok(v as i32)
}

impl ExecutorConfigArgs {
    pub(crate) fn validate(&self, errors: &mut darling::error::Accumulator) -> ExecutorSettings {
        let mut s = ExecutorSettings::default();
        if let Some(e) = &self.max_workers {
            s.max_workers = errors
                .handle(positive_int(e, "max_workers"))
                .map(|v| v as usize);
        }
        if let Some(e) = &self.max_tasks_per_child {
            s.max_tasks_per_child = errors
                .handle(positive_int(e, "max_tasks_per_child"))
                .map(|v| v as usize);
        }
        s.thread_name_prefix = self.thread_name_prefix.as_ref().map(|p| (**p).clone());
        if let Some(m) = &self.max_memory {
            s.limit_span = Some(m.span());
            s.max_memory = errors.handle(crate::names::parse_bytes(m).map_err(|reason| {
                darling::Error::custom(format!("cannot parse max_memory `{}`: {reason}", &**m))
                    .with_span(&m.span())
            }));
        }
        if let Some(c) = &self.max_cpu_time {
            s.limit_span = Some(c.span());
            s.max_cpu_time = errors.handle(crate::names::parse_duration(c).map_err(|reason| {
                darling::Error::custom(format!("cannot parse max_cpu_time `{}`: {reason}", &**c))
                    .with_span(&c.span())
            }));
        }
        s
    }
}

pub(crate) fn executor(arg: &ExecutorArg) -> darling::Result<ExecutorKind> {
    let path = match &arg.0 {
        Expr::Path(p) if p.qself.is_none() => &p.path,
        Expr::Call(_) if arg.custom_path().is_some() => return Ok(ExecutorKind::Custom),
        Expr::Call(_) => {
            return Err(darling::Error::custom(
                "a custom executor is named by the function that makes it: \
                 `executor = custom(path::to::make_executor)`, a `fn() -> CustomExecutor`",
            )
            .with_span(arg));
        }
        other => {
            return Err(darling::Error::custom(
                "`executor` names one: `Inline`, `Tokio`, `ThreadPool`, `Process`, or \
                 `custom(path::to::make_executor)`",
            )
            .with_span(other));
        }
    };
    let name = path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default();
    if let Some((_, k)) = EXECUTORS.iter().find(|(n, _)| *n == name) {
        return Ok(*k);
    }
    let lower = name.to_lowercase();
    let hint = match EXECUTORS
        .iter()
        .find(|(n, _)| n.to_lowercase() == lower || similar(&n.to_lowercase(), &lower))
    {
        Some((n, _)) => format!("; did you mean `{n}`?"),
        None => String::new(),
    };
    Err(darling::Error::custom(format!(
        "unknown executor `{name}`: expected one of `Inline`, `Tokio`, `ThreadPool`, `Process`, or `custom(path)`{hint}"
    ))
    .with_span(path))
}

/// Edit distance of at most two.
fn similar(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// A timeout string, validated, in nanoseconds.
pub(crate) fn timeout(value: &SpannedValue<String>) -> darling::Result<u64> {
    names::parse_duration(value).map_err(|reason| {
        darling::Error::custom(format!("cannot parse timeout `{}`: {reason}", &**value))
            .with_span(&value.span())
    })
}
