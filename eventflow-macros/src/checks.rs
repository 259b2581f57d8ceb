//! Checks that need more than one option, or an option and the signature together.

use crate::attr::HandlerArgs;
use crate::signature::{self, EventParam, Param};

/// A batched handler is an `async fn` taking `Vec<T>` (and optionally `&BatchContext`),
/// with `batch(...)` and no executor; every other handler takes neither.
pub(crate) fn check_batch(
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
        if let Some(ok) = signature::returns_value(&func.sig.output) {
            errors.push(
                darling::Error::custom(
                    "a batched handler answers no single caller: it returns `Result<(), E>` or `()`",
                )
                .with_span(ok),
            );
        }
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
