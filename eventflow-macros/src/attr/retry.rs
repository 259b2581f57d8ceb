//! `retry(..)` and `retry = NAME` in the attributes: parsed, then validated.

use darling::FromMeta;
use syn::{Expr, ExprLit, Lit};

use super::{non_negative_float, positive_int};

/// `retry(...)` with settings, or `retry = NAME` naming a shared policy.
pub(crate) enum RetrySpec {
    Settings(Box<RetryArgs>),
    Named(syn::Path),
}

/// How to write `retry`, for the messages of its wrong forms.
const RETRY_FORMS: &str = "write `retry()` for 3 attempts, `retry(max_attempts = 5)`, or \
     `retry = SHARED` naming a `const RetryPolicy` or a `fn() -> RetryPolicy`";

impl FromMeta for RetrySpec {
    fn from_list(items: &[darling::ast::NestedMeta]) -> darling::Result<Self> {
        let mut errors = darling::Error::accumulator();
        let items = crate::habits::take(items.to_vec(), crate::habits::RETRY, &mut errors);
        let args = errors.handle(RetryArgs::from_list(&items));
        errors
            .finish_with(args)?
            .map(|a| RetrySpec::Settings(Box::new(a)))
            .ok_or_else(|| darling::Error::custom("invalid `retry(..)`"))
    }

    fn from_word() -> darling::Result<Self> {
        Err(darling::Error::custom(format!(
            "`retry` needs settings or a policy: {RETRY_FORMS}"
        )))
    }

    fn from_expr(expr: &Expr) -> darling::Result<Self> {
        match expr {
            Expr::Path(p) if p.qself.is_none() => Ok(RetrySpec::Named(p.path.clone())),
            Expr::Lit(ExprLit {
                lit: Lit::Bool(b), ..
            }) => Err(darling::Error::custom(format!(
                "`retry = {}` is not a policy: {RETRY_FORMS}",
                b.value
            ))
            .with_span(expr)),
            Expr::Lit(ExprLit {
                lit: Lit::Int(_), ..
            }) => Err(darling::Error::custom(
                "`retry = N`: write the number of attempts as `retry(max_attempts = N)`",
            )
            .with_span(expr)),
            _ => Err(darling::Error::custom(format!(
                "`retry = ...` names a policy by its path: {RETRY_FORMS}"
            ))
            .with_span(expr)),
        }
    }
}

impl RetrySpec {
    /// The settings checked, or the named policy.
    pub(crate) fn validate(&self, errors: &mut darling::error::Accumulator) -> RetryConfig {
        match self {
            RetrySpec::Settings(args) => RetryConfig::Settings(args.validate(errors)),
            RetrySpec::Named(path) => RetryConfig::Named(path.clone()),
        }
    }
}

/// A retry policy, validated: settings, or a shared policy named by its path.
pub(crate) enum RetryConfig {
    Settings(Retry),
    Named(syn::Path),
}

/// `retry(max_attempts = 3, backoff_factor = 0.5, max_backoff = 10.0, backoff_step = 1.0,
/// jitter, retry_on = [..])`.
#[derive(FromMeta, Default)]
pub(crate) struct RetryArgs {
    pub max_attempts: Option<Expr>,
    pub backoff_factor: Option<Expr>,
    pub max_backoff: Option<Expr>,
    pub backoff_step: Option<Expr>,
    pub jitter: darling::util::Flag,
    pub retry_on: Option<Expr>,
}

/// Validated retry settings.
pub(crate) struct Retry {
    pub max_attempts: u32,
    pub backoff_factor: f64,
    pub max_backoff: f64,
    pub backoff_step: Option<f64>,
    pub jitter: bool,
    pub retry_on: Vec<syn::Path>,
}

impl RetryArgs {
    pub(crate) fn validate(&self, errors: &mut darling::error::Accumulator) -> Retry {
        let mut r = Retry {
            max_attempts: 3,
            backoff_factor: 0.5,
            max_backoff: 60.0,
            backoff_step: None,
            jitter: self.jitter.is_present(),
            retry_on: Vec::new(),
        };
        if let Some(e) = &self.max_attempts {
            match positive_int(e, "max_attempts") {
                Ok(n) if n > u32::MAX as u64 => errors.push(darling::Error::custom("`max_attempts` is too large").with_span(e)),
                Ok(n) => r.max_attempts = n as u32,
                Err(err) if err.to_string().contains("at least 1") => errors.push(
                    darling::Error::custom("`max_attempts` must be at least 1: it counts the first try, so 1 means no retry")
                        .with_span(e),
                ),
                Err(err) => errors.push(err),
            }
        }
        if let Some(e) = &self.backoff_factor
            && let Some(v) = errors.handle(non_negative_float(e, "backoff_factor"))
        {
            r.backoff_factor = v;
        }
        if let Some(e) = &self.max_backoff
            && let Some(v) = errors.handle(non_negative_float(e, "max_backoff"))
        {
            r.max_backoff = v;
        }
        if let Some(e) = &self.backoff_step {
            r.backoff_step = errors.handle(non_negative_float(e, "backoff_step"));
        }
        if let Some(e) = &self.retry_on {
            match e {
                Expr::Array(arr) => {
                    for el in &arr.elems {
                        match el {
                            Expr::Path(p) if p.qself.is_none() => r.retry_on.push(p.path.clone()),
                            other => errors.push(
                                darling::Error::custom("`retry_on` lists error types, like `[std::io::Error, MyError]`")
                                    .with_span(other),
                            ),
                        }
                    }
                }
                other => errors.push(
                    darling::Error::custom(
                        "`retry_on` takes a list of error types: `retry_on = [std::io::Error]`",
                    )
                    .with_span(other),
                ),
            }
        }
        r
    }
}
