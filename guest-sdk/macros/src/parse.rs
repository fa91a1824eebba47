//! Reads and validates what a macro was applied to. Every error is spanned at the offending
//! tokens.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Type};

/// A validated `#[net::connect]` function.
pub struct ConnectSpec {
    pub item: ItemFn,
    /// Registered name: the tag, or the Rust name.
    pub name: String,
    pub params: Vec<(Ident, Type)>,
    /// `None` for `()`.
    pub ret: Option<Type>,
}

/// A validated `#[net::entry]` function.
pub struct EntrySpec {
    pub item: ItemFn,
}

pub fn connect(attr: TokenStream, item: TokenStream) -> syn::Result<ConnectSpec> {
    let tag = tag(attr)?;
    let item: ItemFn = parse_fn(item, "#[net::connect]")?;
    check_signature(&item, "#[net::connect]")?;
    let mut params = Vec::new();
    for input in &item.sig.inputs {
        let FnArg::Typed(typed) = input else {
            return Err(Error::new(
                input.span(),
                "#[net::connect] functions cannot take `self`: use a free function",
            ));
        };
        let Pat::Ident(pat) = &*typed.pat else {
            return Err(Error::new(
                typed.pat.span(),
                "#[net::connect] parameters must be plain names (`name: Type`), not patterns",
            ));
        };
        if pat.by_ref.is_some() || pat.subpat.is_some() {
            return Err(Error::new(
                pat.span(),
                "#[net::connect] parameters must be plain names (`name: Type`)",
            ));
        }
        check_owned(&typed.ty)?;
        params.push((pat.ident.clone(), (*typed.ty).clone()));
    }
    let ret = match &item.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => {
            check_owned(ty)?;
            Some((**ty).clone())
        }
    };
    let name = tag
        .map(|t| t.value())
        .unwrap_or_else(|| item.sig.ident.to_string());
    Ok(ConnectSpec {
        item,
        name,
        params,
        ret,
    })
}

pub fn entry(attr: TokenStream, item: TokenStream) -> syn::Result<EntrySpec> {
    if !attr.is_empty() {
        return Err(Error::new(
            attr.span(),
            "#[net::entry] takes no arguments: the entry's name is the function's name",
        ));
    }
    let item: ItemFn = parse_fn(item, "#[net::entry]")?;
    check_signature(&item, "#[net::entry]")?;
    if let Some(input) = item.sig.inputs.first() {
        return Err(Error::new(
            input.span(),
            "#[net::entry] functions take no parameters",
        ));
    }
    Ok(EntrySpec { item })
}

/// The optional tag: nothing, or one non-empty string literal without whitespace.
fn tag(attr: TokenStream) -> syn::Result<Option<LitStr>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let span = attr.span();
    let tag: LitStr = syn::parse2(attr).map_err(|_| {
        Error::new(
            span,
            "expected #[net::connect] or #[net::connect(\"tag\")] with one string literal",
        )
    })?;
    let value = tag.value();
    if value.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(Error::new(
            tag.span(),
            "a connection tag must be non-empty and contain no whitespace",
        ));
    }
    Ok(Some(tag))
}

fn parse_fn(item: TokenStream, what: &str) -> syn::Result<ItemFn> {
    let span = item.span();
    syn::parse2(item).map_err(|_| Error::new(span, format!("{what} applies to a free function")))
}

fn check_signature(item: &ItemFn, what: &str) -> syn::Result<()> {
    let sig = &item.sig;
    if let Some(token) = &sig.asyncness {
        return Err(Error::new(
            token.span(),
            format!("{what} functions cannot be async"),
        ));
    }
    if let Some(token) = &sig.unsafety {
        return Err(Error::new(
            token.span(),
            format!("{what} functions cannot be unsafe"),
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(Error::new(
            abi.span(),
            format!("{what} functions cannot declare an ABI"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(
            sig.generics.span(),
            format!("{what} functions cannot be generic: the peer must know the concrete types"),
        ));
    }
    if let Some(dots) = &sig.variadic {
        return Err(Error::new(
            dots.span(),
            format!("{what} functions cannot be variadic"),
        ));
    }
    Ok(())
}

/// Parameters and results cross the wire, so they must be owned types: no references, no
/// `impl Trait`, no trait objects, no bare functions.
fn check_owned(ty: &Type) -> syn::Result<()> {
    let reason = match ty {
        Type::Reference(_) => {
            Some("references cannot cross the wire: use an owned type (`String`, `Vec<T>`, …)")
        }
        Type::ImplTrait(_) => {
            Some("`impl Trait` has no concrete type the other peer could decode: name the type")
        }
        Type::TraitObject(_) => Some("trait objects cannot be serialized: use a concrete type"),
        Type::BareFn(_) => Some("functions cannot cross the wire"),
        Type::Ptr(_) => Some("raw pointers cannot cross the wire"),
        Type::Never(_) => Some("`!` cannot be sent: return a type"),
        Type::Infer(_) => Some("`_` is not a type the peer could decode"),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(Error::new(ty.span(), reason));
    }
    let mut inner = Vec::new();
    match ty {
        Type::Paren(t) => inner.push(&*t.elem),
        Type::Group(t) => inner.push(&*t.elem),
        Type::Array(t) => inner.push(&*t.elem),
        Type::Slice(t) => inner.push(&*t.elem),
        Type::Tuple(t) => inner.extend(t.elems.iter()),
        Type::Path(p) => {
            for segment in &p.path.segments {
                if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        if let syn::GenericArgument::Type(t) = arg {
                            inner.push(t);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    inner.into_iter().try_for_each(check_owned)
}

/// A span for generated items that should point at the function's name.
pub fn name_span(item: &ItemFn) -> Span {
    item.sig.ident.span()
}
