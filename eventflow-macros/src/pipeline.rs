//! Pipeline events: `#[derive(Event)]` with pipeline settings on a `Process` type, and
//! `#[event(...)]` on a function.

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{FnArg, Type};

use crate::attr::{self, ExecutorKind, StepArgs};
use crate::tokens::{executor_config_tokens, executor_tokens, retry_tokens, timeout_tokens};

/// The `StepOptions` expression of `args`, and the items it needs.
pub(crate) fn options(
    p: &TokenStream,
    args: &StepArgs,
    at: &dyn quote::ToTokens,
    errors: &mut darling::error::Accumulator,
) -> (TokenStream, TokenStream) {
    let executor = match &args.executor {
        Some(path) => errors
            .handle(attr::executor(path))
            .unwrap_or(ExecutorKind::Inline),
        None => ExecutorKind::Inline,
    };
    let exec_cfg = args.executor_config.as_ref().map(|c| c.validate(errors));
    if args.executor_config.is_some() && executor == ExecutorKind::Inline {
        errors.push(
            darling::Error::custom(
                "`executor_config` configures a pool; `Inline` (the default) runs steps in \
                 sequence on the pipeline's task: use `executor = ThreadPool`",
            )
            .with_span(&at.to_token_stream()),
        );
    }
    let retry = args.retry.as_ref().map(|r| r.validate(errors));
    let evaluation = match &args.evaluation {
        Some(path) => errors
            .handle(attr::evaluation(path))
            .unwrap_or_else(|| "SuccessOnAllEventsSuccess".into()),
        None => "SuccessOnAllEventsSuccess".into(),
    };
    let timeout = args
        .timeout
        .as_ref()
        .and_then(|t| errors.handle(attr::timeout(t)));
    let (retry, retry_fn) = retry_tokens(p, &retry);
    let executor = executor_tokens(p, executor);
    let (max_workers, max_tasks, prefix) = executor_config_tokens(exec_cfg);
    let evaluation = format_ident!("{}", evaluation);
    let timeout = timeout_tokens(p, timeout);
    let gotos = args.gotos(errors);
    let (soe, sos, sox) = (
        args.stop_on_error.is_present(),
        args.stop_on_success.is_present(),
        args.stop_on_exception.is_present(),
    );
    (
        quote! {
            #p::step_options(
                #executor,
                #p::executor_config(#max_workers, #max_tasks, #prefix),
                #retry,
                #p::EvaluationState::#evaluation,
                #sox,
                #sos,
                #soe,
                #timeout,
                &[#(#gotos),*],
            )
        },
        retry_fn,
    )
}

fn on_process(args: &StepArgs) -> bool {
    args.executor.as_ref().and_then(|p| attr::executor(p).ok()) == Some(ExecutorKind::Process)
}

/// `T` of `Outcome<T>` in a return type.
fn outcome_type(output: &syn::ReturnType) -> Option<Type> {
    let syn::ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(p) = &**ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Outcome" {
        return None;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => match a.args.first() {
            Some(syn::GenericArgument::Type(t)) => Some(t.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// What `#[derive(Event)]` adds for a pipeline event.
pub(crate) fn derive_step(
    p: &TokenStream,
    ident: &syn::Ident,
    name: &str,
    args: &StepArgs,
    errors: &mut darling::error::Accumulator,
) -> TokenStream {
    let (options, retry_fn) = options(p, args, ident, errors);
    // Across processes, the input and output travel as JSON.
    let step_fn = on_process(args).then(|| {
        quote! {
            fn step() -> #p::StepDef {
                #p::StepDef::from_process(
                    <Self as #p::PipelineEvent>::STEP_NAME,
                    <Self as ::core::default::Default>::default(),
                    <Self as #p::PipelineEvent>::options(),
                )
                .with_serde::<<Self as #p::Process>::Input, <Self as #p::Process>::Output>()
            }
        }
    });
    quote! {
        impl #p::PipelineEvent for #ident {
            const STEP_NAME: &'static str = #name;
            fn options() -> #p::StepOptions {
                #retry_fn
                #options
            }
            #step_fn
        }
        #p::inventory::submit! {
            #p::StepRecord {
                name: #name,
                type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                make: <#ident as #p::PipelineEvent>::step,
                location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
            }
        }
    }
}

#[derive(FromMeta, Default)]
struct FnEventArgs {
    name: Option<darling::util::SpannedValue<String>>,
    #[darling(rename = "crate")]
    krate: Option<syn::Path>,
    #[darling(flatten)]
    step: StepArgs,
}

/// `#[event(...)]` on a function: a function-based pipeline event.
pub(crate) fn event_fn(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::tokens::on_function("event", args, item, event_fn_inner)
}

fn event_fn_inner(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
    let mut errors = darling::Error::accumulator();
    let metas = NestedMeta::parse_meta_list(args).map_err(darling::Error::from)?;
    let opts = errors
        .handle(FnEventArgs::from_list(&metas))
        .unwrap_or_default();
    let sig = &func.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            darling::Error::custom(
                "a function-based event cannot be generic: the registry needs one concrete \
                 function; write a non-generic wrapper",
            )
            .with_span(&sig.generics),
        );
    }
    let name = match &opts.name {
        Some(n) => crate::attr::given_name(n, "event", &mut errors),
        None => sig.ident.to_string(),
    };
    // Parameters: the input (by value), and optionally `&mut ExecutionContext`.
    let mut input: Option<Type> = None;
    let mut args = Vec::new();
    for arg in &sig.inputs {
        let FnArg::Typed(t) = arg else {
            errors.push(
                darling::Error::custom("a function-based event cannot take `self`").with_span(arg),
            );
            continue;
        };
        let is_ctx = matches!(&*t.ty, Type::Reference(r) if r.mutability.is_some()
            && matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "ExecutionContext")));
        if is_ctx {
            args.push(quote!(&mut __ctx));
        } else if input.is_none() {
            input = Some((*t.ty).clone());
            args.push(quote!(__input));
        } else {
            errors.push(
                darling::Error::custom(
                    "a function-based event takes its input and, optionally, `&mut ExecutionContext`",
                )
                .with_span(&t.ty),
            );
        }
    }
    let input = input.unwrap_or_else(|| syn::parse_quote!(()));
    let p = crate::tokens::private(&opts.krate);
    let (options, retry_fn) = options(&p, &opts.step, &sig.ident, &mut errors);
    let serde = if on_process(&opts.step) {
        match outcome_type(&sig.output) {
            Some(out) => quote!(.with_serde::<#input, #out>()),
            None => {
                errors.push(
                    darling::Error::custom(
                        "on the Process executor, write the return type as `Outcome<T>`: \
                         the output crosses processes as a `T`",
                    )
                    .with_span(&sig.output),
                );
                quote!()
            }
        }
    } else {
        quote!()
    };
    errors.finish()?;
    let fn_ident = &sig.ident;
    let make = format_ident!("__eventflow_step_{}", fn_ident);
    let call = if sig.asyncness.is_some() {
        quote!(#fn_ident(#(#args),*).await)
    } else {
        quote!(#fn_ident(#(#args),*))
    };
    let input_span = input.span();
    let input_binding = if args.iter().any(|a| a.to_string() == "__input") {
        quote!(__input)
    } else {
        quote!(_)
    };
    let _ = input_span;
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            fn #make() -> #p::StepDef {
                #retry_fn
                #p::StepDef::from_fn(
                    #name,
                    #options,
                    |mut __ctx: #p::ExecutionContext, #input_binding: #input| async move {
                        let __out = #call;
                        (__ctx, __out)
                    },
                )
                #serde
            }
            #p::inventory::submit! {
                #p::StepRecord {
                    name: #name,
                    type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#fn_ident)),
                    make: #make,
                    location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
                }
            }
        };
    })
}
