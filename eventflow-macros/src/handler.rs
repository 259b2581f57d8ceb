//! `#[event_handler]`: a handler record for the function.

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Lit;
use syn::spanned::Spanned;

use crate::attr::{self, ExecutorKind, HandlerArgs};
use crate::checks::*;
use crate::names;
use crate::signature::{self, EventParam, Param};
use crate::tokens::*;

pub(crate) fn event_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    on_function("event_handler", args, item, handler)
}

/// A handler attribute, validated: every value checked, nothing left to report.
struct HandlerConfig {
    opts: HandlerArgs,
    pattern: String,
    retry: Option<attr::RetryConfig>,
    timeout: Option<u64>,
    executor: ExecutorKind,
    /// The `fn() -> CustomExecutor` of `executor = custom(path)`.
    custom_executor: Option<syn::Path>,
    exec_cfg: Option<attr::ExecutorSettings>,
    priority: i32,
    concurrency: Option<u64>,
    batch: Option<(u64, u64)>,
}

/// Parses and checks the attribute and the function's signature, reporting every problem
/// at once.
fn validate(
    args: TokenStream,
    func: &syn::ItemFn,
) -> darling::Result<(HandlerConfig, signature::Signature)> {
    let mut errors = darling::Error::accumulator();
    let metas = NestedMeta::parse_meta_list(args.clone()).map_err(darling::Error::from)?;
    let mut rest = Vec::new();
    let mut pattern: Option<(String, proc_macro2::Span)> = None;
    for m in metas {
        match m {
            NestedMeta::Lit(Lit::Str(s)) if pattern.is_none() && rest.is_empty() => {
                pattern = Some((s.value(), s.span()))
            }
            NestedMeta::Lit(other) => errors.push(
                darling::Error::custom(
                    "the pattern comes first, as one string: `#[event_handler(\"user.*\", ...)]`",
                )
                .with_span(&other),
            ),
            m => rest.push(m),
        }
    }
    let rest = crate::habits::take(rest, crate::habits::HANDLER, &mut errors);
    let opts = errors
        .handle(HandlerArgs::from_list(&rest))
        .unwrap_or_default();
    let pattern = match pattern {
        Some((p, span)) => {
            if let Err(reason) = names::check(&p, true) {
                errors.push(
                    darling::Error::custom(format!("invalid pattern `{p}`: {reason}"))
                        .with_span(&span),
                );
            }
            p
        }
        None => {
            errors.push(
                darling::Error::custom(
                    "missing pattern: write `#[event_handler(\"user.created\")]`",
                )
                .with_span(&args.span()),
            );
            String::new()
        }
    };
    if let Some(n) = &opts.name
        && n.trim().is_empty()
    {
        errors
            .push(darling::Error::custom("a handler's name cannot be empty").with_span(&n.span()));
    }
    let retry = opts.retry.as_ref().map(|r| r.validate(&mut errors));
    let timeout = opts
        .timeout
        .as_ref()
        .and_then(|t| errors.handle(attr::timeout(t)));
    let executor = match &opts.executor {
        Some(path) => errors
            .handle(attr::executor(path))
            .unwrap_or(ExecutorKind::Inline),
        None => ExecutorKind::Inline,
    };
    let exec_cfg = opts
        .executor_config
        .as_ref()
        .map(|c| c.validate(&mut errors));
    if opts.executor_config.is_some() && executor == ExecutorKind::Inline {
        errors.push(
            darling::Error::custom(
                "`executor_config` configures a pool; it needs `executor = ThreadPool`",
            )
            .with_span(&func.sig.ident),
        );
    }
    if let Some(span) = exec_cfg.as_ref().and_then(|c| c.limit_span)
        && executor != ExecutorKind::Process
    {
        errors.push(
            darling::Error::custom(
                "`max_memory` and `max_cpu_time` bound child processes: they need `executor = Process`",
            )
            .with_span(&span),
        );
    }
    if let (ExecutorKind::Process, Some(_)) = (executor, &opts.batch) {
        errors.push(
            darling::Error::custom("a batched handler does not run on the Process executor")
                .with_span(&func.sig.ident),
        );
    }
    let priority = opts
        .priority
        .as_ref()
        .and_then(|e| errors.handle(attr::int(e, "priority")))
        .unwrap_or(0);
    let concurrency = opts
        .concurrency
        .as_ref()
        .and_then(|e| errors.handle(attr::positive_int(e, "concurrency")));
    let sig = signature::analyze(func, &mut errors);
    if let (Some(sig), Some(path)) = (&sig, &opts.executor)
        && !sig.is_async
        && executor == ExecutorKind::Tokio
    {
        errors.push(
            darling::Error::custom(
                "a plain `fn` blocks, so it cannot run on the `Tokio` executor: make it `async fn`, \
                 or use `executor = ThreadPool`",
            )
            .with_span(path),
        );
    }
    let batch = opts.batch.as_ref().and_then(|b| b.validate(&mut errors));
    if let Some(sig) = &sig {
        check_batch(&opts, sig, func, &mut errors);
    }
    errors.finish()?;
    let Some(sig) = sig else {
        return Err(darling::Error::custom("invalid handler signature"));
    };
    let custom_executor = opts
        .executor
        .as_ref()
        .and_then(|e| e.custom_path().cloned());
    Ok((
        HandlerConfig {
            opts,
            pattern,
            retry,
            timeout,
            executor,
            custom_executor,
            exec_cfg,
            priority,
            concurrency,
            batch,
        },
        sig,
    ))
}

/// The handler's record and the functions it points to.
pub(crate) fn handler(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
    let (cfg, sig) = validate(args, func)?;
    let HandlerConfig {
        opts,
        pattern,
        retry,
        timeout,
        executor,
        custom_executor,
        exec_cfg,
        priority,
        concurrency,
        batch,
    } = cfg;

    let p = private(&opts.krate);
    let fn_ident = &func.sig.ident;
    let name = registered_name(opts.name.as_ref().map(|n| n.as_str()), fn_ident);

    let (invoke_fn, invoke, event_type) = invoke_tokens(&p, &sig, func);

    let named = matches!(retry, Some(attr::RetryConfig::Named(_)));
    let (retry_tokens, retry_on_fn) = retry_tokens(&p, &retry);
    let (retry_tokens, retry_from) = match retry_tokens {
        // Looked up when the bus is built: a `fn` cannot be called in the record's static.
        Some(_) if named => (
            quote!(::core::option::Option::None),
            quote!(::core::option::Option::Some(
                __eventflow_named_retry as fn() -> #p::RetryPolicy
            )),
        ),
        Some(t) => (
            quote!(::core::option::Option::Some(#t)),
            quote!(::core::option::Option::None),
        ),
        None => (
            quote!(::core::option::Option::None),
            quote!(::core::option::Option::None),
        ),
    };
    let timeout = timeout_tokens(&p, timeout);
    let executor = executor_tokens(&p, executor);
    // Made when the bus is built: a `fn` cannot be called in the record's static.
    let (custom_fn, custom_from) = match &custom_executor {
        Some(path) => (
            {
                let call = quote_spanned!(path.span()=> #path());
                quote! {
                    fn __eventflow_custom_executor() -> #p::CustomExecutor {
                        #call
                    }
                }
            },
            quote!(::core::option::Option::Some(
                __eventflow_custom_executor as fn() -> #p::CustomExecutor
            )),
        ),
        None => (quote!(), quote!(::core::option::Option::None)),
    };
    let exec_cfg = executor_config_tokens(&p, exec_cfg);
    let opt_usize = |v: Option<usize>| match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let concurrency = opt_usize(concurrency.map(|c| c as usize));
    let batch = match batch {
        Some((size, wait)) => {
            let size = size as usize;
            quote!(::core::option::Option::Some(#p::batch_config(
                #size,
                #p::Duration::from_nanos(#wait),
            )))
        }
        None => quote!(::core::option::Option::None),
    };
    let (filter_fn, filter) = filter_tokens(&p, opts.filter.as_ref(), &sig);

    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #invoke_fn
            #retry_on_fn
            #custom_fn
            #filter_fn
            #p::inventory::submit! {
                #p::HandlerRecord {
                    name: #name,
                    pattern: #pattern,
                    event_type: #event_type,
                    options: #p::handler_options(
                        #retry_tokens,
                        #retry_from,
                        #timeout,
                        #executor,
                        #exec_cfg,
                        #custom_from,
                        #priority,
                        #concurrency,
                        #filter,
                        #batch,
                    ),
                    invoke: #invoke,
                    location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
                }
            }
        };
    })
}

/// The function the record calls (it decodes the event and calls the handler), the
/// record's `invoke` and its event type's name.
fn invoke_tokens(
    p: &TokenStream,
    sig: &signature::Signature,
    func: &syn::ItemFn,
) -> (TokenStream, TokenStream, TokenStream) {
    let fn_ident = &func.sig.ident;
    // Turn the context into the event argument.
    let (event_let, event_arg, event_type) = match &sig.event {
        EventParam::Batch(ty) => (
            quote_spanned!(ty.span()=> let __events = __ctx.decode::<#ty>()?;),
            quote!(__events),
            quote!(::core::concat!("Vec<", ::core::stringify!(#ty), ">")),
        ),
        EventParam::BatchEnvelopes => (
            quote!(),
            quote!(__ctx.envelopes().to_vec()),
            quote!("Vec<Envelope>"),
        ),
        EventParam::Envelope => (
            quote!(),
            quote!(__ctx.envelope().clone()),
            quote!("Envelope"),
        ),
        EventParam::EnvelopeRef => (quote!(), quote!(__ctx.envelope()), quote!("Envelope")),
        EventParam::Typed(ty) => (
            quote_spanned!(ty.span()=> let __event = #p::decode_event::<#ty>(&__ctx)?;),
            quote!(#p::Cow::into_owned(__event)),
            quote!(::core::stringify!(#ty)),
        ),
        EventParam::TypedRef(ty) => (
            quote_spanned!(ty.span()=> let __event = #p::decode_event::<#ty>(&__ctx)?;),
            quote!(&*__event),
            quote!(::core::stringify!(#ty)),
        ),
    };
    let args: Vec<TokenStream> = sig
        .params
        .iter()
        .map(|prm| match prm {
            Param::Event => event_arg.clone(),
            Param::Context { by_ref: true, .. } => quote!(&__ctx),
            Param::Context { by_ref: false, .. } => quote!(__ctx.clone()),
        })
        .collect();
    let convert = into_result(p, func);
    let reply = into_reply(p, func);
    let invoke_ident = format_ident!("__eventflow_invoke_{}", fn_ident);
    let batched = matches!(sig.event, EventParam::Batch(_) | EventParam::BatchEnvelopes);
    let (invoke_fn, invoke) = if batched {
        let check_ident = format_ident!("__eventflow_check_{}", fn_ident);
        let check_body = match &sig.event {
            EventParam::Batch(ty) => quote!(#p::check_payload::<#ty>(__env)),
            _ => quote!({
                let _ = __env;
                ::core::result::Result::Ok(())
            }),
        };
        (
            quote! {
                fn #invoke_ident(__ctx: #p::BatchContext)
                    -> #p::BoxFuture<'static, #p::Result<(), #p::HandlerError>>
                {
                    #p::Box::pin(async move {
                        #event_let
                        #convert(#fn_ident(#(#args),*).await)
                    })
                }
                fn #check_ident(__env: &#p::Envelope) -> #p::Result<(), #p::HandlerError> {
                    #check_body
                }
            },
            quote!(#p::Invoke::Batch(#p::BatchInvoke { run: #invoke_ident, check: #check_ident })),
        )
    } else if sig.is_async {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::HandlerContext)
                    -> #p::BoxFuture<'static, #p::HandlerResult>
                {
                    #p::Box::pin(async move {
                        #event_let
                        #reply(#fn_ident(#(#args),*).await)
                    })
                }
            },
            quote!(#p::Invoke::Async(#invoke_ident)),
        )
    } else {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::HandlerContext) -> #p::HandlerResult {
                    #event_let
                    #reply(#fn_ident(#(#args),*))
                }
            },
            quote!(#p::Invoke::Blocking(#invoke_ident)),
        )
    };

    (invoke_fn, invoke, event_type)
}

/// The filter's function and the record's `filter`: the filter takes what the handler
/// takes, `&T` for a typed handler, `&Envelope` otherwise.
fn filter_tokens(
    p: &TokenStream,
    filter: Option<&syn::Path>,
    sig: &signature::Signature,
) -> (TokenStream, TokenStream) {
    // The filter takes what the handler takes: `&T` for a typed handler, `&Envelope` otherwise.
    match filter {
        None => (quote!(), quote!(::core::option::Option::None)),
        Some(path) => {
            let body = match &sig.event {
                EventParam::Typed(ty) | EventParam::TypedRef(ty) | EventParam::Batch(ty) => {
                    quote_spanned! {path.span()=>
                        let __keep: fn(&#ty) -> bool = #path;
                        match __env.payload.decode::<#ty>() {
                            ::core::result::Result::Ok(__event) => __keep(&*__event),
                            // The handler reports the payload error; the filter lets it through.
                            ::core::result::Result::Err(_) => true,
                        }
                    }
                }
                EventParam::Envelope | EventParam::EnvelopeRef | EventParam::BatchEnvelopes => {
                    quote_spanned! {path.span()=>
                        let __keep: fn(&#p::Envelope) -> bool = #path;
                        __keep(__env)
                    }
                }
            };
            (
                quote! {
                    fn __eventflow_filter(__env: &#p::Envelope) -> bool {
                        #body
                    }
                },
                quote!(::core::option::Option::Some(__eventflow_filter as #p::FilterFn)),
            )
        }
    }
}
