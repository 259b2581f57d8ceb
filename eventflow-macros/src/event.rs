//! `#[derive(Event)]`: an event's name, and its pipeline step when it has step settings.

use darling::FromDeriveInput;
use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput};

use crate::attr::EventInput;
use crate::names;
use crate::pipeline::StepConfig;
use crate::tokens::*;

/// An event's attribute, validated.
struct EventConfig {
    name: String,
    /// The step settings of a pipeline event.
    step: Option<StepConfig>,
}

/// Checks the attribute, reporting every problem into `errors`.
fn validate(opts: &EventInput, errors: &mut darling::error::Accumulator) -> EventConfig {
    let ident = &opts.ident;
    let name = match &opts.name {
        Some(n) => crate::attr::given_name(n, "event", errors),
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
    let step = if !opts.step.any() {
        None
    } else if opts.generics.params.is_empty() {
        Some(StepConfig::validate(&opts.step, ident, errors))
    } else {
        errors.push(
            darling::Error::custom("a pipeline event cannot be generic").with_span(&opts.generics),
        );
        None
    };
    EventConfig { name, step }
}

pub(crate) fn derive_event(input: DeriveInput) -> TokenStream {
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
    let cfg = validate(&opts, &mut errors);
    let ident = &opts.ident;
    let name = &cfg.name;
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
                    location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
                }
            }
        }
    } else {
        quote!()
    };
    let step = match cfg.step {
        Some(step) => crate::pipeline::derive_step(&p, ident, name, step),
        None => quote!(),
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
