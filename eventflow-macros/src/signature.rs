//! What a handler function's signature says: its event parameter, its context parameter,
//! and whether its return type is one the bus accepts.

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, PathArguments, ReturnType, Type};

/// How the handler receives the event.
pub(crate) enum EventParam {
    /// `Envelope`
    Envelope,
    /// `&Envelope`
    EnvelopeRef,
    /// `T`
    Typed(Type),
    /// `&T`
    TypedRef(Type),
    /// `Vec<T>` (a batched handler)
    Batch(Type),
    /// `Vec<Envelope>` (a batched handler)
    BatchEnvelopes,
}

/// One parameter, in order.
pub(crate) enum Param {
    Event,
    /// `HandlerContext`, or `BatchContext` when `batch` is set.
    Context {
        by_ref: bool,
        batch: bool,
    },
}

pub(crate) struct Signature {
    pub is_async: bool,
    pub event: EventParam,
    pub params: Vec<Param>,
}

fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// `T` of `Vec<T>`.
fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match args.args.first() {
            Some(GenericArgument::Type(t)) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn analyze(f: &syn::ItemFn, acc: &mut darling::error::Accumulator) -> Option<Signature> {
    let sig = &f.sig;
    let mut found: Vec<darling::Error> = Vec::new();
    let errors = &mut found;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            darling::Error::custom(
                "an event handler cannot be generic: the registry needs one concrete function; \
                 write a non-generic wrapper that calls the generic one",
            )
            .with_span(&sig.generics),
        );
    }
    if let Some(c) = &sig.constness {
        errors.push(darling::Error::custom("an event handler cannot be `const`").with_span(c));
    }
    if let Some(v) = &sig.variadic {
        errors.push(darling::Error::custom("an event handler cannot be variadic").with_span(v));
    }
    let mut event: Option<EventParam> = None;
    let mut params = Vec::new();
    let mut saw_ctx = false;
    for arg in &sig.inputs {
        let ty = match arg {
            FnArg::Receiver(r) => {
                errors.push(
                    darling::Error::custom(
                        "an event handler is a free function; it cannot take `self`",
                    )
                    .with_span(r),
                );
                continue;
            }
            FnArg::Typed(t) => &*t.ty,
        };
        if let Type::ImplTrait(_) = ty {
            errors.push(
                darling::Error::custom(
                    "an event handler cannot take `impl Trait`: it would be generic",
                )
                .with_span(ty),
            );
            continue;
        }
        let (by_ref, inner) = match ty {
            Type::Reference(r) => {
                if r.mutability.is_some() {
                    errors.push(
                        darling::Error::custom(
                            "an event handler's parameters are shared: use `&T`, not `&mut T`",
                        )
                        .with_span(ty),
                    );
                    // Counted as the event parameter, so no second error says it is missing.
                    event.get_or_insert(EventParam::EnvelopeRef);
                    continue;
                }
                (true, &*r.elem)
            }
            other => (false, other),
        };
        let name = last_ident(inner);
        if let Some(ctx @ ("HandlerContext" | "BatchContext")) = name.as_deref() {
            if saw_ctx {
                errors.push(darling::Error::custom("the context is taken twice").with_span(ty));
            }
            saw_ctx = true;
            params.push(Param::Context {
                by_ref,
                batch: ctx == "BatchContext",
            });
            continue;
        }
        let this = match (name.as_deref(), by_ref, vec_element(inner)) {
            (Some("Vec"), false, Some(el)) if last_ident(el).as_deref() == Some("Envelope") => {
                EventParam::BatchEnvelopes
            }
            (Some("Vec"), false, Some(el)) => EventParam::Batch(el.clone()),
            (Some("Envelope"), false, _) => EventParam::Envelope,
            (Some("Envelope"), true, _) => EventParam::EnvelopeRef,
            (_, false, _) => EventParam::Typed(inner.clone()),
            (_, true, _) => EventParam::TypedRef(inner.clone()),
        };
        if event.is_some() {
            errors.push(
                darling::Error::custom(
                    "an event handler takes exactly one event parameter; this is a second one \
                     (the other parameter may only be `&HandlerContext`)",
                )
                .with_span(ty),
            );
            continue;
        }
        event = Some(this);
        params.push(Param::Event);
    }
    if event.is_none() {
        errors.push(
            darling::Error::custom(
                "an event handler needs an event parameter: a type deriving `Event`, or `Envelope` / `&Envelope`",
            )
            .with_span(&sig.ident),
        );
    }
    // A batched handler answers no one: it is checked for a value with its batch.
    check_handler_return(&sig.output, errors);
    let bad = !found.is_empty();
    for e in found {
        acc.push(e);
    }
    if bad {
        return None;
    }
    Some(Signature {
        is_async: sig.asyncness.is_some(),
        event: event?,
        params,
    })
}

/// The return type written, unless it is none or `()`.
fn declared_return(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => match &**ty {
            Type::Tuple(t) if t.elems.is_empty() => None,
            ty => Some(ty),
        },
    }
}

/// A handler returns `()`, `Result<(), E>` or `Result<T, E>`: `T` is its value, which the
/// compiler checks is `Serialize` (through `IntoReply`).
fn check_handler_return(output: &ReturnType, errors: &mut Vec<darling::Error>) {
    let Some(ty) = declared_return(output) else {
        return;
    };
    let is_result =
        matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|l| l.ident == "Result"));
    if !is_result {
        errors.push(
            darling::Error::custom(
                "an event handler returns `()`, `Result<(), E>`, or `Result<T, E>` to give the caller a value (`T: Serialize`, `E: Into<HandlerError>`)",
            )
            .with_span(&ty.span()),
        );
    }
}

/// Whether a return type carries a value (`Result<T, E>` with `T` other than `()`).
pub(crate) fn returns_value(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(p) = &**ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(args) => match args.args.first() {
            Some(GenericArgument::Type(ok)) if !matches!(ok, Type::Tuple(t) if t.elems.is_empty()) => {
                Some(ok)
            }
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn check_return(output: &ReturnType, what: &str, errors: &mut Vec<darling::Error>) {
    check_return_of(output, what, "HandlerError", errors)
}

/// `()` or `Result<(), E>` with `E: Into<error>`.
pub(crate) fn check_return_of(
    output: &ReturnType,
    what: &str,
    error: &str,
    errors: &mut Vec<darling::Error>,
) {
    let Some(ty) = declared_return(output) else {
        return;
    };
    let wrong = || {
        darling::Error::custom(format!(
            "{what} returns `Result<(), E>` (with `E: Into<{error}>`) or `()`"
        ))
        .with_span(&ty.span())
    };
    let Type::Path(p) = ty else {
        errors.push(wrong());
        return;
    };
    let Some(last) = p.path.segments.last() else {
        errors.push(wrong());
        return;
    };
    if last.ident != "Result" {
        errors.push(wrong());
        return;
    }
    if let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(ok)) = args.args.first()
        && !matches!(ok, Type::Tuple(t) if t.elems.is_empty())
    {
        errors.push(
            darling::Error::custom(format!(
                "{what}'s `Result` carries no value: write `Result<(), E>`"
            ))
            .with_span(ok),
        );
    }
}

/// A scheduled function's signature: no parameter, or the schedule context (by value or
/// by reference).
pub(crate) struct ScheduledSignature {
    pub is_async: bool,
    /// `None`: no parameter; `Some(by_ref)`: the context.
    pub context: Option<bool>,
}

pub(crate) fn analyze_scheduled(
    f: &syn::ItemFn,
    acc: &mut darling::error::Accumulator,
) -> Option<ScheduledSignature> {
    let sig = &f.sig;
    let mut errors: Vec<darling::Error> = Vec::new();
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            darling::Error::custom(
                "a scheduled function cannot be generic: the registry needs one concrete function",
            )
            .with_span(&sig.generics),
        );
    }
    if let Some(c) = &sig.constness {
        errors.push(darling::Error::custom("a scheduled function cannot be `const`").with_span(c));
    }
    let mut context = None;
    for (i, arg) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(t) = arg else {
            errors.push(
                darling::Error::custom(
                    "a scheduled function is a free function; it cannot take `self`",
                )
                .with_span(arg),
            );
            continue;
        };
        let (by_ref, inner) = match &*t.ty {
            Type::Reference(r) if r.mutability.is_none() => (true, &*r.elem),
            other => (false, other),
        };
        if i > 0 || last_ident(inner).as_deref() != Some("ScheduleContext") {
            errors.push(
                darling::Error::custom(
                    "a scheduled function takes no parameter, or one `&ScheduleContext`",
                )
                .with_span(&t.ty),
            );
            continue;
        }
        context = Some(by_ref);
    }
    check_return(&sig.output, "a scheduled function", &mut errors);
    let bad = !errors.is_empty();
    for e in errors {
        acc.push(e);
    }
    (!bad).then_some(ScheduledSignature {
        is_async: sig.asyncness.is_some(),
        context,
    })
}
