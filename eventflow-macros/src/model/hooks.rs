//! `#[hooks]` on an impl block and `#[before_create(User)]` (and the other seven) on free
//! functions: hook records for the model.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ReturnType, Type};

use crate::signature::check_return_of;
use crate::tokens::private;

const KINDS: &[&str] = &[
    "before_create",
    "after_create",
    "before_update",
    "after_update",
    "before_write",
    "after_write",
    "before_delete",
    "after_delete",
];

fn kind_tokens(p: &TokenStream, kind: &str) -> TokenStream {
    let variant = match kind {
        "before_create" => quote!(BeforeCreate),
        "after_create" => quote!(AfterCreate),
        "before_update" => quote!(BeforeUpdate),
        "after_update" => quote!(AfterUpdate),
        "before_write" => quote!(BeforeWrite),
        "after_write" => quote!(AfterWrite),
        "before_delete" => quote!(BeforeDelete),
        _ => quote!(AfterDelete),
    };
    quote!(#p::HookKind::#variant)
}

/// Only `before_create`, `before_update` and `before_write` may change the model.
fn may_mutate(kind: &str) -> bool {
    matches!(kind, "before_create" | "before_update" | "before_write")
}

fn hook_kind_of(attr: &syn::Attribute) -> Option<&'static str> {
    let last = attr.path().segments.last()?.ident.to_string();
    KINDS.iter().copied().find(|k| *k == last)
}

/// How a hook takes the model and the context.
struct HookSig {
    mutable: bool,
    context: bool,
    is_async: bool,
}

/// Checks what follows the model: nothing, or `&HookContext`; and the return type.
fn check_rest<'a>(
    rest: impl Iterator<Item = &'a FnArg>,
    output: &ReturnType,
    errors: &mut Vec<darling::Error>,
) -> bool {
    let mut context = false;
    for (i, arg) in rest.enumerate() {
        let ok = match arg {
            FnArg::Typed(t) => match &*t.ty {
                Type::Reference(r) if r.mutability.is_none() => matches!(&*r.elem,
                    Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "HookContext")),
                _ => false,
            },
            FnArg::Receiver(_) => false,
        };
        if !ok || i > 0 {
            errors.push(
                darling::Error::custom(
                    "after the model, a hook takes nothing or one `&HookContext`",
                )
                .with_span(arg),
            );
        }
        context = true;
    }
    check_return_of(output, "a hook", "HookError", errors);
    context
}

fn mutability_error(kind: &str, span: &dyn quote::ToTokens) -> darling::Error {
    darling::Error::custom(format!(
        "`{kind}` hooks cannot change the model: take `&self` (only before_create, \
         before_update and before_write take `&mut self`)"
    ))
    .with_span(&span.to_token_stream())
}

/// The wrapper the store calls: it downcasts the model and runs the hook.
fn wrapper(
    p: &TokenStream,
    wrapper: &syn::Ident,
    model: &TokenStream,
    call: TokenStream,
    sig: &HookSig,
    ret_span: proc_macro2::Span,
) -> (TokenStream, TokenStream) {
    let convert = quote_spanned!(ret_span=> #p::IntoResult::<#p::HookError>::into_result);
    let ctx = if sig.context { quote!(__ctx) } else { quote!() };
    let body = if sig.is_async {
        quote!(#p::Box::pin(async move { #convert(#call(__this, #ctx).await) }))
    } else {
        quote!(#p::Box::pin(::core::future::ready(#convert(#call(__this, #ctx)))))
    };
    let (param, downcast, invoke) = if sig.mutable {
        (
            quote!(&'a mut (dyn #p::Any + ::core::marker::Send + ::core::marker::Sync)),
            quote!(downcast_mut),
            quote!(#p::HookInvoke::Mut(#wrapper)),
        )
    } else {
        (
            quote!(&'a (dyn #p::Any + ::core::marker::Send + ::core::marker::Sync)),
            quote!(downcast_ref),
            quote!(#p::HookInvoke::Ref(#wrapper)),
        )
    };
    (
        quote! {
            #[allow(unused_variables)]
            fn #wrapper<'a>(
                __model: #param,
                __ctx: &'a #p::HookContext,
            ) -> #p::BoxFuture<'a, #p::Result<(), #p::HookError>> {
                match __model.#downcast::<#model>() {
                    ::core::option::Option::Some(__this) => #body,
                    ::core::option::Option::None => #p::Box::pin(::core::future::ready(
                        ::core::result::Result::Err(#p::HookError::msg("a hook was given another model")),
                    )),
                }
            }
        },
        invoke,
    )
}

fn record(
    p: &TokenStream,
    model: &TokenStream,
    name: TokenStream,
    kind: &str,
    position: Option<u32>,
    invoke: TokenStream,
) -> TokenStream {
    let kind = kind_tokens(p, kind);
    let position = match position {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        #p::inventory::submit! {
            #p::HookRecord {
                name: #name,
                model: #p::TypeId::of::<#model> as fn() -> #p::TypeId,
                model_name: <#model as #p::Model>::NAME,
                kind: #kind,
                position: #position,
                invoke: #invoke,
                location: #p::SourceLocation::new(::core::module_path!(), ::core::file!(), ::core::line!()),
            }
        }
    }
}

/// `#[hooks]` on an inherent impl block.
pub(crate) fn hooks(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut imp: syn::ItemImpl = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(_) => {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                "`#[hooks]` goes on an impl block of a model: `#[hooks] impl User { .. }`",
            )
            .to_compile_error();
            return quote!(#e #item);
        }
    };
    let mut errors: Vec<darling::Error> = Vec::new();
    let krate: Option<syn::Path> = if args.is_empty() {
        None
    } else {
        match syn::parse2::<syn::MetaNameValue>(args.clone()) {
            Ok(nv) if nv.path.is_ident("crate") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => s.parse().ok(),
                _ => None,
            },
            _ => {
                errors.push(
                    darling::Error::custom(
                        "`#[hooks]` takes no arguments (except `crate = \"..\"`)",
                    )
                    .with_span(&args),
                );
                None
            }
        }
    };
    if !imp.generics.params.is_empty() {
        errors.push(
            darling::Error::custom(
                "hooks cannot be on a generic impl: the registry needs one concrete model type",
            )
            .with_span(&imp.generics),
        );
    }
    if let Some((path, _)) = &imp.trait_ {
        errors.push(
            darling::Error::custom("`#[hooks]` goes on an inherent impl block, not a trait impl")
                .with_span(path),
        );
    }
    let p = private(&krate);
    let self_ty = &imp.self_ty;
    let model = quote!(#self_ty);
    let type_label = quote!(#self_ty).to_string().replace(' ', "");
    let mut generated = Vec::new();
    let mut position = 0u32;
    for item in &mut imp.items {
        let ImplItem::Fn(method) = item else { continue };
        let mut kinds = Vec::new();
        method.attrs.retain(|a| match hook_kind_of(a) {
            Some(k) => {
                if !matches!(a.meta, syn::Meta::Path(_)) {
                    errors.push(
                        darling::Error::custom(format!(
                            "inside `#[hooks]`, write `#[{k}]` alone: the model is the impl's type"
                        ))
                        .with_span(&a.meta),
                    );
                }
                kinds.push(k);
                false
            }
            None => true,
        });
        for kind in kinds {
            let sig = &method.sig;
            let mut inputs = sig.inputs.iter();
            let mutable = match inputs.next() {
                Some(FnArg::Receiver(r)) if matches!(r.kind, syn::ReceiverKind::Reference(..)) => {
                    let m = matches!(r.kind, syn::ReceiverKind::Reference(_, _, Some(_)));
                    if m && !may_mutate(kind) {
                        errors.push(mutability_error(kind, r));
                    }
                    m
                }
                other => {
                    let msg = "a hook method takes `&self` or `&mut self`";
                    match other {
                        Some(arg) => errors.push(darling::Error::custom(msg).with_span(arg)),
                        None => errors.push(darling::Error::custom(msg).with_span(&sig.ident)),
                    }
                    continue;
                }
            };
            let context = check_rest(inputs, &sig.output, &mut errors);
            if !sig.generics.params.is_empty() {
                errors.push(
                    darling::Error::custom("a hook cannot be generic").with_span(&sig.generics),
                );
            }
            let hs = HookSig {
                mutable,
                context,
                is_async: sig.asyncness.is_some(),
            };
            let method_ident = &sig.ident;
            let wrapper_ident = format_ident!("__eventflow_hook_{}_{}", method_ident, kind);
            let ret_span = match &sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => method_ident.span(),
            };
            let (w, invoke) = wrapper(
                &p,
                &wrapper_ident,
                &model,
                quote!(<#self_ty>::#method_ident),
                &hs,
                ret_span,
            );
            let name = format!("{type_label}::{method_ident}");
            let rec = record(&p, &model, quote!(#name), kind, Some(position), invoke);
            position += 1;
            generated.push(quote!(#w #rec));
        }
    }
    let errs: Vec<TokenStream> = errors.into_iter().map(|e| e.write_errors()).collect();
    if !errs.is_empty() {
        return quote!(#imp #(#errs)*);
    }
    quote! {
        #imp
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #(#generated)*
        };
    }
}

/// `#[before_create(User)]` on a free function, or misplaced on a method.
pub(crate) fn hook_fn(kind: &'static str, args: TokenStream, item: TokenStream) -> TokenStream {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                proc_macro2::Span::call_site(),
                format!(
                    "`#[{kind}(Model)]` goes on a function, or on a method of a `#[hooks]` impl"
                ),
            )
            .to_compile_error();
            return quote!(#e #item);
        }
    };
    let mut errors: Vec<darling::Error> = Vec::new();
    if let Some(FnArg::Receiver(r)) = func.sig.inputs.first() {
        let e = darling::Error::custom(format!(
            "`#[{kind}]` on a method needs `#[hooks]` on its impl block: `#[hooks] impl Model {{ .. }}`"
        ))
        .with_span(r)
        .write_errors();
        return quote!(#e #func);
    }
    let model_ty: Option<syn::Type> = if args.is_empty() {
        errors.push(
            darling::Error::custom(format!(
                "name the model: `#[{kind}(User)]` (or put the method in a `#[hooks]` impl)"
            ))
            .with_span(&func.sig.ident),
        );
        None
    } else {
        match syn::parse2::<syn::Type>(args.clone()) {
            Ok(t) => Some(t),
            Err(_) => {
                errors.push(
                    darling::Error::custom(format!("`#[{kind}(..)]` takes the model's type"))
                        .with_span(&args),
                );
                None
            }
        }
    };
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        errors.push(darling::Error::custom("a hook cannot be generic").with_span(&sig.generics));
    }
    let mut inputs = sig.inputs.iter();
    let mutable = match inputs.next() {
        Some(FnArg::Typed(t)) => match &*t.ty {
            Type::Reference(r) => {
                if r.mutability.is_some() && !may_mutate(kind) {
                    errors.push(mutability_error(kind, &t.ty));
                }
                r.mutability.is_some()
            }
            _ => {
                errors.push(
                    darling::Error::custom(
                        "a hook takes the model by reference: `&User` or `&mut User`",
                    )
                    .with_span(&t.ty),
                );
                false
            }
        },
        _ => {
            errors.push(
                darling::Error::custom("a hook takes the model first: `user: &mut User`")
                    .with_span(&sig.ident),
            );
            false
        }
    };
    let context = check_rest(inputs, &sig.output, &mut errors);
    let errs: Vec<TokenStream> = errors.into_iter().map(|e| e.write_errors()).collect();
    let Some(model_ty) = model_ty.filter(|_| errs.is_empty()) else {
        return quote!(#func #(#errs)*);
    };
    let p = private(&None);
    let model = quote!(#model_ty);
    let fn_ident = &sig.ident;
    let hs = HookSig {
        mutable,
        context,
        is_async: sig.asyncness.is_some(),
    };
    let wrapper_ident = format_ident!("__eventflow_hook_{}", fn_ident);
    let ret_span = match &sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => fn_ident.span(),
    };
    let (w, invoke) = wrapper(&p, &wrapper_ident, &model, quote!(#fn_ident), &hs, ret_span);
    let name = quote!(::core::concat!(
        ::core::module_path!(),
        "::",
        ::core::stringify!(#fn_ident)
    ));
    let rec = record(&p, &model, name, kind, None, invoke);
    quote! {
        #func
        #[doc(hidden)]
        #[allow(non_snake_case)]
        const _: () = {
            #w
            #rec
        };
    }
}
