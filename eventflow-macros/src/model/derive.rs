//! `#[derive(Model)]`: the model's name and id, and its registration.

use darling::util::{Flag, SpannedValue};
use darling::{FromDeriveInput, FromField};
use proc_macro2::TokenStream;
use quote::quote;
use syn::Type;

use crate::names;
use crate::tokens::private;

#[derive(FromField)]
#[darling(attributes(model))]
struct ModelField {
    ident: Option<syn::Ident>,
    ty: Type,
    id: Flag,
}

#[derive(FromDeriveInput)]
#[darling(attributes(model), supports(struct_named))]
struct ModelInput {
    ident: syn::Ident,
    generics: syn::Generics,
    data: darling::ast::Data<(), ModelField>,
    name: Option<SpannedValue<String>>,
    #[darling(rename = "crate")]
    krate: Option<syn::Path>,
}

/// `Option<i64>`, written so.
fn is_option_i64(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    if last.ident != "Option" {
        return false;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(a) => matches!(
            a.args.first(),
            Some(syn::GenericArgument::Type(Type::Path(t))) if t.path.is_ident("i64")
        ),
        _ => false,
    }
}

/// A model, validated: its name and its id field.
struct ModelConfig {
    name: String,
    id: syn::Ident,
}

pub(crate) fn derive_model(input: syn::DeriveInput) -> TokenStream {
    let opts = match ModelInput::from_derive_input(&input) {
        Ok(o) => o,
        Err(e) => return e.write_errors(),
    };
    match validate(&opts) {
        Ok(cfg) => generate(&opts, cfg),
        Err(e) => e.write_errors(),
    }
}

/// Checks the attribute and the fields, reporting every problem at once.
fn validate(opts: &ModelInput) -> darling::Result<ModelConfig> {
    let mut errors = darling::Error::accumulator();
    let ident = &opts.ident;
    if !opts.generics.params.is_empty() {
        errors.push(
            darling::Error::custom("a model cannot be generic: the store needs one concrete type")
                .with_span(&opts.generics),
        );
    }
    let name = match &opts.name {
        Some(n) => crate::attr::given_name(n, "model", &mut errors),
        None => names::snake_case(&ident.to_string()),
    };
    let fields = opts
        .data
        .as_ref()
        .take_struct()
        .map(|f| f.fields)
        .unwrap_or_default();
    let ids: Vec<&&ModelField> = fields.iter().filter(|f| f.id.is_present()).collect();
    let id_field = match ids.as_slice() {
        [one] => {
            if !is_option_i64(&one.ty) {
                errors.push(
                    darling::Error::custom(
                        "the id field is an `Option<i64>`: `None` until the store assigns one",
                    )
                    .with_span(&one.ty),
                );
            }
            one.ident.clone()
        }
        [] => {
            errors.push(
                darling::Error::custom(
                    "a model needs an id field: mark an `Option<i64>` field with `#[model(id)]`",
                )
                .with_span(ident),
            );
            None
        }
        [_, second, ..] => {
            errors.push(
                darling::Error::custom("only one field can be `#[model(id)]`")
                    .with_span(&second.ident),
            );
            None
        }
    };
    errors.finish()?;
    let id = id_field.ok_or_else(|| darling::Error::custom("the id field has no name"))?;
    Ok(ModelConfig { name, id })
}

/// The `Model` impl and the registration of a validated model.
fn generate(opts: &ModelInput, cfg: ModelConfig) -> TokenStream {
    let ModelConfig { name, id } = cfg;
    let ident = &opts.ident;
    let p = private(&opts.krate);
    quote! {
        const _: () = {
            impl #p::Model for #ident {
                const NAME: &'static str = #name;
                fn id(&self) -> ::core::option::Option<i64> {
                    self.#id
                }
                fn set_id(&mut self, id: i64) {
                    self.#id = ::core::option::Option::Some(id);
                }
            }
            #p::inventory::submit! {
                #p::ModelRecord {
                    name: #name,
                    type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
                }
            }
        };
    }
}
