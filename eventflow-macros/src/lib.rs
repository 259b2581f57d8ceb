//! Procedural macros of eventflow. Use them through the `eventflow` crate, which
//! re-exports them; their generated code reaches the runtime only through
//! `::eventflow::__private_<version>` (or under the path given with `crate = "..."`).
//!
//! Each macro runs in three stages: it parses its attribute into an options struct
//! (darling, `attr`), validates it into a config that holds only checked values
//! (`HandlerConfig`, `ScheduledConfig`, `EventConfig` and `StepConfig`, `FnEventConfig`,
//! `ModelConfig`; the checks across options live in `checks`), and generates code from
//! that config alone, with the token helpers of `tokens`. Every error is reported, each on the token at fault; on error the user's item
//! is still emitted so that the rest of the crate keeps type-checking.

use proc_macro::TokenStream;

mod attr;
mod checks;
mod event;
mod habits;
mod handler;
mod model;
mod names;
mod pipeline;
mod rules;
mod scheduled;
mod signature;
mod tokens;

/// Implements `Event` for a struct or enum and registers it. See the `eventflow` crate.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    event::derive_event(input).into()
}

/// Registers a function as a bus handler for a pattern. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn event_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::event_handler(args.into(), item.into()).into()
}

/// A function-based pipeline event. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    pipeline::event_fn(args.into(), item.into()).into()
}

/// Registers a function that runs on a schedule. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn scheduled(args: TokenStream, item: TokenStream) -> TokenStream {
    scheduled::scheduled(args.into(), item.into()).into()
}

/// Implements `Model` for a struct and registers it. See the `eventflow` crate.
#[proc_macro_derive(Model, attributes(model))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    model::derive_model(input).into()
}

/// Registers the hook methods of a model's impl block. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn hooks(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hooks(args.into(), item.into()).into()
}

/// A `before_create` hook: alone on a method of a `#[hooks]` impl, or `#[before_create(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn before_create(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("before_create", args.into(), item.into()).into()
}

/// A `after_create` hook: alone on a method of a `#[hooks]` impl, or `#[after_create(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn after_create(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("after_create", args.into(), item.into()).into()
}

/// A `before_update` hook: alone on a method of a `#[hooks]` impl, or `#[before_update(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn before_update(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("before_update", args.into(), item.into()).into()
}

/// A `after_update` hook: alone on a method of a `#[hooks]` impl, or `#[after_update(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn after_update(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("after_update", args.into(), item.into()).into()
}

/// A `before_write` hook: alone on a method of a `#[hooks]` impl, or `#[before_write(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn before_write(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("before_write", args.into(), item.into()).into()
}

/// A `after_write` hook: alone on a method of a `#[hooks]` impl, or `#[after_write(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn after_write(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("after_write", args.into(), item.into()).into()
}

/// A `before_delete` hook: alone on a method of a `#[hooks]` impl, or `#[before_delete(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn before_delete(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("before_delete", args.into(), item.into()).into()
}

/// A `after_delete` hook: alone on a method of a `#[hooks]` impl, or `#[after_delete(Model)]` on a free
/// function. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn after_delete(args: TokenStream, item: TokenStream) -> TokenStream {
    model::hook_fn("after_delete", args.into(), item.into()).into()
}

#[cfg(test)]
mod snapshots {
    //! The generated code of a few annotations, kept in `tests/snapshots/` so that a change
    //! to what the macros emit shows in review. Refresh with `UPDATE_SNAPSHOTS=1`.

    use quote::quote;

    fn check(name: &str, tokens: proc_macro2::TokenStream) {
        let file: syn::File = match syn::parse2(tokens.clone()) {
            Ok(f) => f,
            Err(e) => panic!("expansion of {name} does not parse: {e}\n{tokens}"),
        };
        let pretty = prettyplease::unparse(&file);
        let path = format!("{}/tests/snapshots/{name}.rs", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &pretty).expect("write snapshot");
            return;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == pretty,
            "expansion of {name} changed; review it and run with UPDATE_SNAPSHOTS=1\n--- new ---\n{pretty}"
        );
    }

    #[test]
    fn typed_async_handler_with_options() {
        check(
            "typed_async_handler",
            crate::handler::event_handler(
                quote!(
                    "user.created",
                    retry(
                        max_attempts = 3,
                        backoff_factor = 0.1,
                        retry_on = [std::io::Error]
                    ),
                    timeout = "5s"
                ),
                quote!(
                    async fn send_welcome(
                        event: UserCreated,
                        ctx: &HandlerContext,
                    ) -> Result<(), HandlerError> {
                        Ok(())
                    }
                ),
            ),
        );
    }

    #[test]
    fn blocking_handler_on_a_pool() {
        check(
            "blocking_pool_handler",
            crate::handler::event_handler(
                quote!(
                    "order.*",
                    executor = ThreadPool,
                    executor_config(max_workers = 4, thread_name_prefix = "report-")
                ),
                quote!(
                    fn write_report(event: &Envelope) {}
                ),
            ),
        );
    }

    #[test]
    fn scheduled_function() {
        check(
            "scheduled_function",
            crate::scheduled::scheduled(
                quote!(every = "30s", missed = CatchUp),
                quote!(
                    async fn sweep(ctx: &ScheduleContext) -> Result<(), HandlerError> {
                        Ok(())
                    }
                ),
            ),
        );
    }

    #[test]
    fn derived_event() {
        check(
            "derive_event",
            crate::event::derive_event(syn::parse_quote!(
                #[event(name = "user.created")]
                struct UserCreated {
                    id: u64,
                }
            )),
        );
    }
}
