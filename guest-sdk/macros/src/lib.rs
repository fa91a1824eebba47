//! Procedural macros of the netrun guest SDK. Use them through the `net` crate
//! (`#[net::connect]`, `#[net::entry]`), which pins this crate's exact version.
//!
//! # Layout
//!
//! Each macro is a pipeline: [`parse`] reads the attribute and the function and validates them
//! (every misuse is a `syn::Error` spanned at the offending code, never a panic), then
//! [`expand`] writes the exports, the manifest record and the remote stub, naming everything
//! by absolute `::net::__private::…` paths.

use proc_macro::TokenStream;

mod expand;
mod parse;

/// Makes a function callable by other peers: `#[net::connect]` registers it under its Rust
/// name, `#[net::connect("tag")]` under `tag`. The function stays a plain Rust function; the
/// macro adds `name::on(&peer, args…) -> Result<R, net::Error>` to run it on another peer.
#[proc_macro_attribute]
pub fn connect(attr: TokenStream, item: TokenStream) -> TokenStream {
    parse::connect(attr.into(), item.into())
        .map(|spec| expand::connect(&spec))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes a function with no parameters an entry point, run by
/// `netrun run APP.wasm --entry NAME` once the peer is up. It returns `()` or
/// `Result<(), E>` with `E: Display`.
#[proc_macro_attribute]
pub fn entry(attr: TokenStream, item: TokenStream) -> TokenStream {
    parse::entry(attr.into(), item.into())
        .map(|spec| expand::entry(&spec))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
