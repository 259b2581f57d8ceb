//! `#[scheduled]`: a scheduled function's record.

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;

use crate::attr::{self};
use crate::names;
use crate::signature::{self};
use crate::tokens::*;

pub(crate) fn scheduled(args: TokenStream, item: TokenStream) -> TokenStream {
    on_function("scheduled", args, item, scheduled_fn)
}

/// When a scheduled function runs, validated.
enum Schedule {
    /// Every this many nanoseconds (at least a millisecond).
    Every(u64),
    /// A cron expression that parses.
    Cron(String),
}

/// A `#[scheduled]` attribute and its function's signature, validated: every value
/// checked, nothing left to report.
struct ScheduledConfig {
    krate: Option<syn::Path>,
    name: Option<String>,
    schedule: Schedule,
    missed: attr::Missed,
    timeout: Option<u64>,
    sig: signature::ScheduledSignature,
}

pub(crate) fn scheduled_fn(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
    let cfg = validate(args, func)?;
    Ok(generate(cfg, func))
}

/// Parses and checks the attribute and the function's signature, reporting every problem
/// at once.
fn validate(args: TokenStream, func: &syn::ItemFn) -> darling::Result<ScheduledConfig> {
    let mut errors = darling::Error::accumulator();
    let metas = NestedMeta::parse_meta_list(args.clone()).map_err(darling::Error::from)?;
    // A schedule written wrongly is reported as such, not also as missing.
    let wrote_schedule = metas.iter().any(|m| {
        matches!(m, NestedMeta::Meta(meta) if ["every", "cron", "interval", "schedule", "crontab"]
            .iter()
            .any(|k| meta.path().is_ident(k)))
    });
    let metas = crate::habits::take(metas, crate::habits::SCHEDULED, &mut errors);
    let opts = errors
        .handle(attr::ScheduledArgs::from_list(&metas))
        .unwrap_or_default();
    let schedule = match (&opts.every, &opts.cron) {
        (Some(every), None) => match names::parse_duration(every) {
            Ok(ns) if ns >= 1_000_000 => Some(Schedule::Every(ns)),
            Ok(_) => {
                errors.push(
                    darling::Error::custom("the interval must be at least 1ms")
                        .with_span(&every.span()),
                );
                None
            }
            Err(reason) => {
                errors.push(
                    darling::Error::custom(format!(
                        "cannot parse interval `{}`: {reason}",
                        every.as_str()
                    ))
                    .with_span(&every.span()),
                );
                None
            }
        },
        (None, Some(cron)) => match <cron::Schedule as std::str::FromStr>::from_str(cron) {
            Ok(_) => Some(Schedule::Cron(cron.to_string())),
            Err(_) => {
                let n = cron.split_whitespace().count();
                let why = if (6..=7).contains(&n) {
                    "a field is out of range or malformed".to_owned()
                } else {
                    format!("it has {n} field(s)")
                };
                errors.push(
                    darling::Error::custom(format!(
                        "invalid cron expression `{}`: {why}; write six or seven fields, \
                             seconds first: \"0 */5 * * * *\" is every five minutes",
                        &**cron
                    ))
                    .with_span(&cron.span()),
                );
                None
            }
        },
        (Some(_), Some(cron)) => {
            errors.push(
                darling::Error::custom("give `every` or `cron`, not both").with_span(&cron.span()),
            );
            None
        }
        (None, None) if wrote_schedule => None,
        (None, None) => {
            errors.push(
                darling::Error::custom(
                    "missing schedule: write `#[scheduled(every = \"30s\")]` or \
                     `#[scheduled(cron = \"0 */5 * * * *\")]`",
                )
                .with_span(&args.span()),
            );
            None
        }
    };
    if let Some(n) = &opts.name
        && n.trim().is_empty()
    {
        errors.push(
            darling::Error::custom("a scheduled function's name cannot be empty")
                .with_span(&n.span()),
        );
    }
    let missed = match &opts.missed {
        Some(path) => errors
            .handle(attr::missed(path))
            .unwrap_or(attr::Missed::Skip),
        None => attr::Missed::Skip,
    };
    let timeout = opts
        .timeout
        .as_ref()
        .and_then(|t| errors.handle(attr::timeout(t)));
    let sig = signature::analyze_scheduled(func, &mut errors);
    errors.finish()?;
    let (Some(sig), Some(schedule)) = (sig, schedule) else {
        return Err(darling::Error::custom("invalid scheduled function"));
    };
    Ok(ScheduledConfig {
        krate: opts.krate,
        name: opts.name.map(|n| n.to_string()),
        schedule,
        missed,
        timeout,
        sig,
    })
}

/// The record of a validated scheduled function and the function it points to.
fn generate(cfg: ScheduledConfig, func: &syn::ItemFn) -> TokenStream {
    let ScheduledConfig {
        krate,
        name,
        schedule,
        missed,
        timeout,
        sig,
    } = cfg;
    let p = private(&krate);
    let fn_ident = &func.sig.ident;
    let name = registered_name(name.as_deref(), fn_ident);
    let schedule = match schedule {
        Schedule::Every(ns) => {
            quote!(#p::DeclaredSchedule::Every(#p::Duration::from_nanos(#ns)))
        }
        Schedule::Cron(c) => quote!(#p::DeclaredSchedule::Cron(#c)),
    };
    let arg = match sig.context {
        None => quote!(),
        Some(true) => quote!(&__ctx),
        Some(false) => quote!(__ctx),
    };
    let convert = into_result(&p, func);
    let invoke_ident = format_ident!("__eventflow_scheduled_{}", fn_ident);
    let (invoke_fn, invoke) = if sig.is_async {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::ScheduleContext)
                    -> #p::BoxFuture<'static, #p::Result<(), #p::HandlerError>>
                {
                    #p::Box::pin(async move { #convert(#fn_ident(#arg).await) })
                }
            },
            quote!(#p::ScheduledJobInvoke::Async(#invoke_ident)),
        )
    } else {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::ScheduleContext) -> #p::Result<(), #p::HandlerError> {
                    #convert(#fn_ident(#arg))
                }
            },
            quote!(#p::ScheduledJobInvoke::Blocking(#invoke_ident)),
        )
    };
    let missed = match missed {
        attr::Missed::Skip => quote!(#p::MissedTicks::Skip),
        attr::Missed::CatchUp => quote!(#p::MissedTicks::CatchUp),
    };
    let timeout = match timeout {
        Some(ns) => quote!(::core::option::Option::Some(#p::Duration::from_nanos(#ns))),
        None => quote!(::core::option::Option::None),
    };
    // An unused context parameter is fine: `__ctx` is moved or borrowed only when taken.
    let allow_unused = sig
        .context
        .is_none()
        .then(|| quote!(#[allow(unused_variables)]));
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #allow_unused
            #invoke_fn
            #p::inventory::submit! {
                #p::ScheduledJobRecord {
                    name: #name,
                    schedule: #schedule,
                    missed: #missed,
                    timeout: #timeout,
                    invoke: #invoke,
                    location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
                }
            }
        };
    }
}
