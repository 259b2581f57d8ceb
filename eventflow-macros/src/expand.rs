//! Code generation. Every path goes through `<crate>::__private`, and every registration is
//! an `inventory::submit!` of a `'static` record inside `const _: () = { ... };`.

use darling::ast::NestedMeta;
use darling::util::SpannedValue;
use darling::{FromDeriveInput, FromMeta};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Lit};

use crate::attr::{self, EventInput, ExecutorKind, HandlerArgs};
use crate::names;
use crate::signature::{self, EventParam, Param};

fn private(krate: &Option<syn::Path>) -> TokenStream {
    match krate {
        Some(p) => quote!(#p::__private),
        None => quote!(::eventflow::__private),
    }
}

pub fn derive_event(input: DeriveInput) -> TokenStream {
    if let Data::Union(u) = &input.data {
        return syn::Error::new(
            u.union_token.span(),
            "`#[derive(Event)]` cannot be used on a union: an event is a struct or an enum",
        )
        .to_compile_error();
    }
    let opts = match EventInput::from_derive_input(&input) {
        Ok(o) => o,
        Err(e) => return e.write_errors(),
    };
    let mut errors = darling::Error::accumulator();
    let ident = &opts.ident;
    let name = match &opts.name {
        Some(n) => crate::attr::given_name(n, "event", &mut errors),
        None => {
            let n = names::snake_case(&ident.to_string());
            if let Err(reason) = names::check(&n, false) {
                errors.push(
                    darling::Error::custom(format!(
                        "the default event name `{n}` derived from the type name is invalid ({reason}); \
                         set one with `#[event(name = \"...\")]`"
                    ))
                    .with_span(ident),
                );
            }
            n
        }
    };
    let p = private(&opts.krate);
    let (impl_g, ty_g, where_clause) = opts.generics.split_for_impl();
    let mut where_clause = where_clause
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(where));
    for tp in opts.generics.type_params() {
        let t = &tp.ident;
        where_clause.predicates.push(syn::parse_quote!(#t: 'static));
    }
    // Generic types have no single concrete type to register; they still implement `Event`.
    let record = if opts.generics.params.is_empty() {
        quote! {
            #p::inventory::submit! {
                #p::EventRecord {
                    name: #name,
                    type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    location: #p::SourceLocation {
                        module: ::core::module_path!(), file: ::core::file!(), line: ::core::line!(),
                    },
                }
            }
        }
    } else {
        quote!()
    };
    let step = if opts.step.any() {
        if opts.generics.params.is_empty() {
            crate::pipeline::derive_step(&p, ident, &name, &opts.step, &mut errors)
        } else {
            errors.push(
                darling::Error::custom("a pipeline event cannot be generic")
                    .with_span(&opts.generics),
            );
            quote!()
        }
    } else {
        quote!()
    };
    let impl_block = quote! {
        impl #impl_g #p::Event for #ident #ty_g #where_clause {
            const NAME: &'static str = #name;
        }
    };
    match errors.finish() {
        // Still implement the trait, so uses of the type do not add a cascade of errors.
        Err(e) => {
            let errs = e.write_errors();
            quote! { #errs const _: () = { #impl_block }; }
        }
        Ok(()) => quote! {
            const _: () = {
                #impl_block
                #step
                #record
            };
        },
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

/// A batched handler is an `async fn` taking `Vec<T>` (and optionally `&BatchContext`),
/// with `batch(...)` and no executor; every other handler takes neither.
fn check_batch(
    opts: &HandlerArgs,
    sig: &signature::Signature,
    func: &syn::ItemFn,
    errors: &mut darling::error::Accumulator,
) {
    let takes_vec = matches!(sig.event, EventParam::Batch(_) | EventParam::BatchEnvelopes);
    let batch_ctx = sig
        .params
        .iter()
        .any(|p| matches!(p, Param::Context { batch: true, .. }));
    let plain_ctx = sig
        .params
        .iter()
        .any(|p| matches!(p, Param::Context { batch: false, .. }));
    let inputs = &func.sig.inputs;
    let at_inputs = |msg: &str| {
        if inputs.is_empty() {
            darling::Error::custom(msg).with_span(&func.sig.ident)
        } else {
            darling::Error::custom(msg).with_span(inputs)
        }
    };
    if opts.batch.is_some() {
        if !takes_vec {
            errors.push(at_inputs(
                "with `batch(...)` the handler takes the batch: `Vec<T>` or `Vec<Envelope>`",
            ));
        }
        if plain_ctx {
            errors.push(at_inputs(
                "a batched handler takes `&BatchContext`, not `&HandlerContext`",
            ));
        }
        if !sig.is_async {
            errors.push(
                darling::Error::custom("a batched handler is an `async fn`")
                    .with_span(&func.sig.fn_token),
            );
        }
        if let Some(path) = &opts.executor {
            errors.push(
                darling::Error::custom(
                    "a batched handler runs on a tokio task of its own; it takes no executor",
                )
                .with_span(path),
            );
        }
    } else {
        if takes_vec {
            errors.push(at_inputs(
                "a handler taking a `Vec` of events needs batch settings: \
                 `batch(max_size = 100, max_wait = \"50ms\")`",
            ));
        }
        if batch_ctx {
            errors.push(at_inputs(
                "`BatchContext` is for batched handlers; this one takes `&HandlerContext`",
            ));
        }
    }
}

/// The registered name: the one given, or `module::path::fn_name`.
fn registered_name(given: &Option<SpannedValue<String>>, fn_ident: &syn::Ident) -> TokenStream {
    match given {
        Some(n) => {
            let n = &**n;
            quote!(#n)
        }
        None => quote!(::core::concat!(
            ::core::module_path!(),
            "::",
            ::core::stringify!(#fn_ident)
        )),
    }
}

/// The conversion of the function's return value, spanned on its return type.
fn into_result(p: &TokenStream, func: &syn::ItemFn) -> TokenStream {
    let ret_span = match &func.sig.output {
        syn::ReturnType::Type(_, ty) => ty.span(),
        syn::ReturnType::Default => func.sig.ident.span(),
    };
    quote_spanned!(ret_span=> #p::IntoHandlerResult::into_handler_result)
}

pub fn event_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    on_function("event_handler", args, item, handler)
}

fn handler(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
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
    if let (ExecutorKind::Process, Some(path)) = (executor, &opts.executor) {
        errors.push(
            darling::Error::custom(
                "the Process executor runs pipeline steps; a handler runs on `Inline`, `Tokio` \
                 or `ThreadPool`",
            )
            .with_span(path),
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

    let p = private(&opts.krate);
    let fn_ident = &func.sig.ident;
    let name = registered_name(&opts.name, fn_ident);

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
    let convert = into_result(&p, func);
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
                    -> #p::BoxFuture<'static, #p::Result<(), #p::HandlerError>>
                {
                    #p::Box::pin(async move {
                        #event_let
                        #convert(#fn_ident(#(#args),*).await)
                    })
                }
            },
            quote!(#p::Invoke::Async(#invoke_ident)),
        )
    } else {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::HandlerContext) -> #p::Result<(), #p::HandlerError> {
                    #event_let
                    #convert(#fn_ident(#(#args),*))
                }
            },
            quote!(#p::Invoke::Blocking(#invoke_ident)),
        )
    };

    let (retry_tokens, retry_on_fn) = retry_tokens(&p, &retry);
    let timeout = timeout_tokens(&p, timeout);
    let executor = executor_tokens(&p, executor);
    let (max_workers, max_tasks, prefix) = executor_config_tokens(&p, exec_cfg);
    let opt_usize = |v: Option<usize>| match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let concurrency = opt_usize(concurrency.map(|c| c as usize));
    let batch = match batch {
        Some((size, wait)) => {
            let size = size as usize;
            quote!(::core::option::Option::Some(#p::BatchConfig {
                max_size: #size,
                max_wait: #p::Duration::from_nanos(#wait),
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    // The filter takes what the handler takes: `&T` for a typed handler, `&Envelope` otherwise.
    let (filter_fn, filter) = match &opts.filter {
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
    };

    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #invoke_fn
            #retry_on_fn
            #filter_fn
            #p::inventory::submit! {
                #p::HandlerRecord {
                    name: #name,
                    pattern: #pattern,
                    event_type: #event_type,
                    options: #p::HandlerOptions {
                        retry: #retry_tokens,
                        timeout: #timeout,
                        executor: #executor,
                        executor_config: #p::ExecutorConfig {
                            max_workers: #max_workers,
                            max_tasks_per_child: #max_tasks,
                            thread_name_prefix: #prefix,
                        },
                        priority: #priority,
                        concurrency: #concurrency,
                        filter: #filter,
                        batch: #batch,
                    },
                    invoke: #invoke,
                    location: #p::SourceLocation {
                        module: ::core::module_path!(), file: ::core::file!(), line: ::core::line!(),
                    },
                }
            }
        };
    })
}

pub fn scheduled(args: TokenStream, item: TokenStream) -> TokenStream {
    on_function("scheduled", args, item, scheduled_fn)
}

fn scheduled_fn(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
    let mut errors = darling::Error::accumulator();
    let metas = NestedMeta::parse_meta_list(args.clone()).map_err(darling::Error::from)?;
    let opts = errors
        .handle(attr::ScheduledArgs::from_list(&metas))
        .unwrap_or_default();
    let p = private(&opts.krate);
    let schedule = match (&opts.every, &opts.cron) {
        (Some(every), None) => match names::parse_duration(every) {
            Ok(ns) if ns >= 1_000_000 => {
                Some(quote!(#p::ScheduleSpec::Every(#p::Duration::from_nanos(#ns))))
            }
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
                        &**every
                    ))
                    .with_span(&every.span()),
                );
                None
            }
        },
        (None, Some(cron)) => match <cron::Schedule as std::str::FromStr>::from_str(cron) {
            Ok(_) => {
                let c = &**cron;
                Some(quote!(#p::ScheduleSpec::Cron(#c)))
            }
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

    let fn_ident = &func.sig.ident;
    let name = registered_name(&opts.name, fn_ident);
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
            quote!(#p::ScheduledInvoke::Async(#invoke_ident)),
        )
    } else {
        (
            quote! {
                fn #invoke_ident(__ctx: #p::ScheduleContext) -> #p::Result<(), #p::HandlerError> {
                    #convert(#fn_ident(#arg))
                }
            },
            quote!(#p::ScheduledInvoke::Blocking(#invoke_ident)),
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
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #allow_unused
            #invoke_fn
            #p::inventory::submit! {
                #p::ScheduledRecord {
                    name: #name,
                    schedule: #schedule,
                    missed: #missed,
                    timeout: #timeout,
                    invoke: #invoke,
                    location: #p::SourceLocation {
                        module: ::core::module_path!(), file: ::core::file!(), line: ::core::line!(),
                    },
                }
            }
        };
    })
}

/// A retry policy's tokens, and the `retry_on` check function they name (if any).
pub(crate) fn retry_tokens(
    p: &TokenStream,
    retry: &Option<attr::Retry>,
) -> (TokenStream, TokenStream) {
    match retry {
        None => (quote!(#p::RetryPolicy::NEVER), quote!()),
        Some(r) => {
            let max_attempts = r.max_attempts;
            let factor = r.backoff_factor;
            let cap = r.max_backoff;
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
                quote! {
                    #p::RetryPolicy {
                        max_attempts: #max_attempts,
                        backoff_factor: #factor,
                        max_backoff: #cap,
                        jitter: #jitter,
                        retry_on: #retry_on,
                    }
                },
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
    }
}

/// (max_workers, max_tasks_per_child, thread_name_prefix) of an `ExecutorConfig`.
pub(crate) fn executor_config_tokens(
    p: &TokenStream,
    cfg: Option<attr::ExecutorSettings>,
) -> (TokenStream, TokenStream, TokenStream) {
    let cfg = cfg.unwrap_or_default();
    let opt_usize = |v: Option<usize>| match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let prefix = match &cfg.thread_name_prefix {
        Some(s) => quote!(::core::option::Option::Some(#p::Cow::Borrowed(#s))),
        None => quote!(::core::option::Option::None),
    };
    (
        opt_usize(cfg.max_workers),
        opt_usize(cfg.max_tasks_per_child),
        prefix,
    )
}
