//! Token helpers every generator uses: the path to the runtime's private module, the
//! function-attribute wrapper, and the tokens of options shared by handlers, scheduled
//! functions and pipeline steps. Generators import this module, never each other.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::attr::{self, ExecutorKind};

/// The runtime's private module of this crate's version (`__private_0_1_0`): a runtime of
/// another version has no such module, so the mismatch is a compile error.
pub(crate) fn private(krate: &Option<syn::Path>) -> TokenStream {
    let module = quote::format_ident!(
        "__private_{}",
        env!("CARGO_PKG_VERSION").replace(['.', '-'], "_")
    );
    match krate {
        Some(p) => quote!(#p::#module),
        None => quote!(::eventflow::#module),
    }
}

/// Runs `expand` on the function an attribute is on, and emits the function followed by
/// the generated code (or the errors: the function stays, so the crate keeps type-checking).
pub(crate) fn on_function(
    attribute: &str,
    args: TokenStream,
    item: TokenStream,
    expand: fn(TokenStream, &syn::ItemFn) -> darling::Result<TokenStream>,
) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("`#[{attribute}]` goes on a function (`async fn` or `fn`)"),
            )
            .to_compile_error();
            return quote!(#e #item);
        }
    };
    match expand(args, &func) {
        Ok(ts) => quote!(#func #ts),
        Err(e) => {
            let errs = e.write_errors();
            quote!(#func #errs)
        }
    }
}

/// The registered name: the one given, or `module::path::fn_name`.
pub(crate) fn registered_name(given: Option<&str>, fn_ident: &syn::Ident) -> TokenStream {
    match given {
        Some(n) => quote!(#n),
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#fn_ident)
        )),
    }
}

/// The conversion of the function's return value, spanned on its return type.
pub(crate) fn into_result(p: &TokenStream, func: &syn::ItemFn) -> TokenStream {
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => func.sig.ident.span(),
    };
    quote_spanned!(ret_span=> #p::IntoResult::<#p::HandlerError>::into_result)
}

/// The conversion of a handler's return value into its reply (its value as JSON, or its
/// error), spanned at the return type so that a wrong one is reported there.
pub(crate) fn into_reply(p: &TokenStream, func: &syn::ItemFn) -> TokenStream {
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => func.sig.ident.span(),
    };
    quote_spanned!(ret_span=> #p::IntoReply::into_reply)
}

/// A retry policy's tokens, and the `retry_on` check function they name (if any).
/// A retry policy: its expression (`None` when no `retry` is given), and the items it needs.
/// A named policy is looked up by a function the items define, `__eventflow_named_retry`.
pub(crate) fn retry_tokens(
    p: &TokenStream,
    retry: &Option<attr::RetryConfig>,
) -> (Option<TokenStream>, TokenStream) {
    match retry {
        None => (None, quote!()),
        Some(attr::RetryConfig::Named(path)) => (
            Some(quote!(__eventflow_named_retry())),
            quote! {
                fn __eventflow_named_retry() -> #p::RetryPolicy {
                    #p::NamedRetryPolicy::retry_policy(#path)
                }
            },
        ),
        Some(attr::RetryConfig::Settings(r)) => {
            let max_attempts = r.max_attempts;
            let factor = r.backoff_factor;
            let cap = r.max_backoff;
            let step = match r.backoff_step {
                Some(s) => quote!(::core::option::Option::Some(#s)),
                None => quote!(::core::option::Option::None),
            };
            let jitter = r.jitter;
            let (retry_on, retry_on_fn) = if r.retry_on.is_empty() {
                (quote!(::core::option::Option::None), quote!())
            } else {
                let checks = r
                    .retry_on
                    .iter()
                    .map(|t| quote_spanned!(t.span()=> __err.is::<#t>()));
                (
                    quote!(::core::option::Option::Some(__eventflow_retry_on as fn(&#p::HandlerError) -> bool)),
                    quote! {
                        fn __eventflow_retry_on(__err: &#p::HandlerError) -> bool {
                            false #(|| #checks)*
                        }
                    },
                )
            };
            (
                Some(quote! {
                    #p::retry_policy(#max_attempts, #factor, #cap, #step, #jitter, #retry_on)
                }),
                retry_on_fn,
            )
        }
    }
}

pub(crate) fn timeout_tokens(p: &TokenStream, timeout: Option<u64>) -> TokenStream {
    match timeout {
        Some(ns) => quote!(::core::option::Option::Some(#p::Duration::from_nanos(#ns))),
        None => quote!(::core::option::Option::None),
    }
}

pub(crate) fn executor_tokens(p: &TokenStream, executor: ExecutorKind) -> TokenStream {
    match executor {
        ExecutorKind::Inline => quote!(#p::Executor::Inline),
        ExecutorKind::Tokio => quote!(#p::Executor::Tokio),
        ExecutorKind::ThreadPool => quote!(#p::Executor::ThreadPool),
        ExecutorKind::Process => quote!(#p::Executor::Process),
        ExecutorKind::Custom => quote!(#p::Executor::Custom),
    }
}

/// The arguments of `executor_config(...)` in the private module: max_workers,
/// max_tasks_per_child, thread_name_prefix, max_memory, max_cpu_time.
pub(crate) fn executor_config_tokens(
    p: &TokenStream,
    cfg: Option<attr::ExecutorSettings>,
) -> TokenStream {
    let cfg = cfg.unwrap_or_default();
    let opt_usize = |v: Option<usize>| match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let prefix = match &cfg.thread_name_prefix {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::core::option::Option::None),
    };
    let memory = match cfg.max_memory {
        Some(b) => quote!(::core::option::Option::Some(#b)),
        None => quote!(::core::option::Option::None),
    };
    let cpu = match cfg.max_cpu_time {
        Some(ns) => quote!(::core::option::Option::Some(#p::Duration::from_nanos(#ns))),
        None => quote!(::core::option::Option::None),
    };
    let (workers, tasks) = (
        opt_usize(cfg.max_workers),
        opt_usize(cfg.max_tasks_per_child),
    );
    quote!(#p::executor_config(#workers, #tasks, #prefix, #memory, #cpu))
}
