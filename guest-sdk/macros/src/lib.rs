//! Procedural macros of the netrun guest SDK. Use them through the `net` crate
//! (`#[net::connect]`, `#[net::entry]`, `#[net::event]`, `#[net::subscribe]`, `#[net::flag]`), which pins this crate's exact version; the examples
//! live there.
//!
//! # Layout
//!
//! Each macro is a pipeline, one module per stage:
//!
//! - `parse`: reads the attribute's arguments and the function, as syntax;
//! - `validate`: checks that it fits the ABI; every misuse is a `syn::Error` spanned at the
//!   offending code, never a panic;
//! - `expand`: writes the exports, the manifest record (computed here, at compile time, with
//!   `netrun-abi`) and the remote stub, naming everything by absolute `::net::__private::…`
//!   paths.
//!
//! On an error the function is emitted unchanged next to the error, so the only message the
//! author sees is the one about the misuse.

use proc_macro::TokenStream;

mod expand;
mod parse;
mod validate;

/// Makes a function callable by other peers. See the `net` crate's documentation of
/// `connect` for the full contract.
#[proc_macro_attribute]
pub fn connect(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    parse::connect(attr.into(), item.into())
        .and_then(validate::connect)
        .map(|spec| expand::connect(&spec))
        .unwrap_or_else(|e| failed(e, original))
        .into()
}

/// Makes a function with no parameters an entry point. See the `net` crate's documentation of
/// `entry` for the full contract.
#[proc_macro_attribute]
pub fn entry(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    parse::entry(attr.into(), item.into())
        .and_then(validate::entry)
        .map(|spec| expand::entry(&spec))
        .unwrap_or_else(|e| failed(e, original))
        .into()
}

/// Makes a function an event: calling it runs it here and hands its return value to every
/// peer subscribed to the event. See the `net` crate's documentation of `event`.
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    parse::named(attr.into(), item.into(), "event")
        .and_then(validate::event)
        .map(|spec| expand::event(&spec))
        .unwrap_or_else(|e| failed(e, original))
        .into()
}

/// Subscribes a function to an event on other peers. See the `net` crate's documentation of
/// `subscribe`.
#[proc_macro_attribute]
pub fn subscribe(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    parse::subscribe(attr.into(), item.into())
        .and_then(validate::subscribe)
        .map(|spec| expand::subscribe(&spec))
        .unwrap_or_else(|e| failed(e, original))
        .into()
}

/// Declares the handler of a flag. See the `net` crate's documentation of `flag`.
#[proc_macro_attribute]
pub fn flag(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    parse::named(attr.into(), item.into(), "flag")
        .and_then(validate::flag)
        .map(|spec| expand::flag(&spec))
        .unwrap_or_else(|e| failed(e, original))
        .into()
}

/// The error, and the item as it was written (so its uses do not add errors of their own).
fn failed(error: syn::Error, original: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let error = error.into_compile_error();
    quote::quote!(#error #original)
}
