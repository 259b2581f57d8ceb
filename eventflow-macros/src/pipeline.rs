//! Pipeline events: `#[derive(Event)]` with pipeline settings on a `Process` type, and
//! `#[event(...)]` on a function.

use darling::FromMeta;
use darling::ast::NestedMeta;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, Type};

use crate::attr::{self, ExecutorKind, StepArgs};
use crate::tokens::{executor_config_tokens, executor_tokens, retry_tokens, timeout_tokens};

/// A pipeline event's step settings, validated: every value checked, nothing left to
/// report.
pub(crate) struct StepConfig {
    executor: ExecutorKind,
    /// The `fn() -> CustomExecutor` of `executor = custom(path)`.
    custom_executor: Option<syn::Path>,
    exec_cfg: Option<attr::ExecutorSettings>,
    retry: Option<attr::RetryConfig>,
    evaluation: String,
    timeout: Option<u64>,
    gotos: Vec<u32>,
    stop_on_error: bool,
    stop_on_success: bool,
    stop_on_exception: bool,
}

impl StepConfig {
    /// Checks `args`, reporting every problem into `errors` (`at` is where a problem of
    /// the whole attribute is shown).
    pub(crate) fn validate(
        args: &StepArgs,
        at: &dyn quote::ToTokens,
        errors: &mut darling::error::Accumulator,
    ) -> StepConfig {
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
        StepConfig {
            executor,
            custom_executor: args
                .executor
                .as_ref()
                .and_then(|e| e.custom_path().cloned()),
            exec_cfg,
            retry,
            evaluation,
            timeout,
            gotos: args.gotos(errors),
            stop_on_error: args.stop_on_error.is_present(),
            stop_on_success: args.stop_on_success.is_present(),
            stop_on_exception: args.stop_on_exception.is_present(),
        }
    }

    /// Whether the step runs on the Process executor (its input and output cross
    /// processes as JSON).
    fn on_process(&self) -> bool {
        self.executor == ExecutorKind::Process
    }

    /// The `StepOptions` expression, and the items it needs.
    fn tokens(self, p: &TokenStream) -> (TokenStream, TokenStream) {
        let (retry, retry_fn) = retry_tokens(p, &self.retry);
        let retry = retry.unwrap_or_else(|| quote!(#p::RetryPolicy::NEVER));
        let executor = executor_tokens(p, self.executor);
        let exec_cfg = executor_config_tokens(p, self.exec_cfg);
        let custom = self.custom_executor.map(|path| {
            let call = quote::quote_spanned!(syn::spanned::Spanned::span(&path)=> #path());
            quote!(.custom(#call))
        });
        let evaluation = format_ident!("{}", self.evaluation);
        let timeout = timeout_tokens(p, self.timeout);
        let gotos = &self.gotos;
        let (soe, sos, sox) = (
            self.stop_on_error,
            self.stop_on_success,
            self.stop_on_exception,
        );
        (
            quote! {
                #p::step_options(
                    #executor,
                    #exec_cfg #custom,
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
    step: StepConfig,
) -> TokenStream {
    // Across processes, the input and output travel as JSON.
    let step_fn = step.on_process().then(|| {
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
    let (options, retry_fn) = step.tokens(p);
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

/// A function-based event, validated: every value checked, nothing left to report.
struct FnEventConfig {
    krate: Option<syn::Path>,
    name: String,
    /// The input type (`()` when the function takes none).
    input: Type,
    /// Whether the function takes its input (else it takes only the context, or nothing).
    takes_input: bool,
    /// The call's arguments, in the function's order.
    args: Vec<TokenStream>,
    step: StepConfig,
    /// `T` of `Outcome<T>`, for a step on the Process executor.
    process_output: Option<Type>,
}

fn event_fn_inner(args: TokenStream, func: &syn::ItemFn) -> darling::Result<TokenStream> {
    let cfg = validate_fn_event(args, func)?;
    Ok(generate_fn_event(cfg, func))
}

/// Parses and checks the attribute and the function's signature, reporting every problem
/// at once.
fn validate_fn_event(args: TokenStream, func: &syn::ItemFn) -> darling::Result<FnEventConfig> {
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
    let takes_input = input.is_some();
    let input = input.unwrap_or_else(|| syn::parse_quote!(()));
    let step = StepConfig::validate(&opts.step, &sig.ident, &mut errors);
    let process_output = if step.on_process() {
        let out = outcome_type(&sig.output);
        if out.is_none() {
            errors.push(
                darling::Error::custom(
                    "on the Process executor, write the return type as `Outcome<T>`: \
                     the output crosses processes as a `T`",
                )
                .with_span(&sig.output),
            );
        }
        out
    } else {
        None
    };
    errors.finish()?;
    Ok(FnEventConfig {
        krate: opts.krate,
        name,
        input,
        takes_input,
        args,
        step,
        process_output,
    })
}

/// The step record of a validated function-based event and the function it points to.
fn generate_fn_event(cfg: FnEventConfig, func: &syn::ItemFn) -> TokenStream {
    let FnEventConfig {
        krate,
        name,
        input,
        takes_input,
        args,
        step,
        process_output,
    } = cfg;
    let p = crate::tokens::private(&krate);
    let (options, retry_fn) = step.tokens(&p);
    let serde = match process_output {
        Some(out) => quote!(.with_serde::<#input, #out>()),
        None => quote!(),
    };
    let fn_ident = &func.sig.ident;
    let make = format_ident!("__eventflow_step_{}", fn_ident);
    let call = if func.sig.asyncness.is_some() {
        quote!(#fn_ident(#(#args),*).await)
    } else {
        quote!(#fn_ident(#(#args),*))
    };
    let input_binding = if takes_input {
        quote!(__input)
    } else {
        quote!(_)
    };
    quote! {
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
    }
}
