//! First stage: reads the attribute's arguments and the item it is applied to, as syntax only.
//! Whether what was read makes sense for the ABI is [`crate::validate`]'s job.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::{Error, Item, ItemFn, LitStr};

/// What `#[net::connect(…)]` was applied to, as written.
pub struct ConnectInput {
    /// The tag, when the attribute has one.
    pub tag: Option<LitStr>,
    pub item: ItemFn,
}

/// What `#[net::entry(…)]` was applied to, as written.
pub struct EntryInput {
    /// The attribute's arguments; an entry takes none.
    pub args: TokenStream,
    pub item: ItemFn,
}

pub fn connect(attr: TokenStream, item: TokenStream) -> syn::Result<ConnectInput> {
    let tag = tag.parse2(attr)?;
    let item = function(item, "#[net::connect]")?;
    Ok(ConnectInput { tag, item })
}

pub fn entry(attr: TokenStream, item: TokenStream) -> syn::Result<EntryInput> {
    let item = function(item, "#[net::entry]")?;
    Ok(EntryInput { args: attr, item })
}

/// Nothing, or exactly one string literal.
fn tag(input: ParseStream) -> syn::Result<Option<LitStr>> {
    if input.is_empty() {
        return Ok(None);
    }
    if !input.peek(LitStr) {
        return Err(input.error(
            "expected #[net::connect] or #[net::connect(\"tag\")]: the tag is one string literal",
        ));
    }
    let tag: LitStr = input.parse()?;
    if !input.is_empty() {
        let rest: TokenStream = input.parse()?;
        return Err(Error::new_spanned(
            rest,
            "#[net::connect] takes at most one tag: #[net::connect(\"tag\")]",
        ));
    }
    Ok(Some(tag))
}

/// The item as a function; anything else is an error spanned over the item.
fn function(item: TokenStream, what: &str) -> syn::Result<ItemFn> {
    match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(function)) => Ok(function),
        Ok(other) => Err(Error::new_spanned(
            other,
            format!("{what} applies to a free function (`fn name(args…) -> T {{ … }}`)"),
        )),
        // Not an item at all: syn's own message says what it expected.
        Err(_) => syn::parse2::<ItemFn>(item),
    }
}
