//! Procedural macros of eventflow. Use them through the `eventflow` crate, which
//! re-exports them; their generated code reaches the runtime only through
//! `::eventflow::__private` (or the path given with `crate = "..."`).
//!
//! Each macro parses its attribute into an options struct (darling), validates it, and
//! expands. Every error is reported, each on the token at fault; on error the user's item
//! is still emitted so that the rest of the crate keeps type-checking.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod names;
mod signature;

/// Implements `Event` for a struct or enum and registers it. See the `eventflow` crate.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive_event(input).into()
}

/// Registers a function as a bus handler for a pattern. See the `eventflow` crate.
#[proc_macro_attribute]
pub fn event_handler(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::event_handler(args.into(), item.into()).into()
}
