//! Second stage: checks that a parsed function fits the ABI, and turns it into the spec that
//! [`crate::expand`] writes code for. Every misuse is a `syn::Error` spanned at the offending
//! tokens (never a panic); independent mistakes are reported together.
//!
//! What cannot be checked on syntax alone (a parameter type that is not a serde type, an entry
//! that returns something other than `()` or `Result<(), E: Display>`) is left to the compiler
//! through assertions that `expand` emits with the type's span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Error, FnArg, Ident, ItemFn, Pat, ReturnType, Signature, Type};

use crate::parse::{ConnectInput, EntryInput};

/// A validated `#[net::connect]` function.
pub struct ConnectSpec {
    pub item: ItemFn,
    /// Registered name: the tag, or the Rust name.
    pub name: String,
    /// The Rust name, without `r#`.
    pub rust_name: String,
    pub params: Vec<(Ident, Type)>,
    /// `None` for `()`.
    pub ret: Option<Type>,
}

/// A validated `#[net::entry]` function.
pub struct EntrySpec {
    pub item: ItemFn,
    /// Registered name: the Rust name, without `r#`.
    pub name: String,
}

/// Collects errors so that one expansion reports every mistake it can see.
#[derive(Default)]
struct Errors(Option<Error>);

impl Errors {
    fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn check(&mut self, result: syn::Result<()>) {
        if let Err(e) = result {
            self.push(e);
        }
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

const CONNECT: &str = "#[net::connect]";
const ENTRY: &str = "#[net::entry]";

pub fn connect(input: ConnectInput) -> syn::Result<ConnectSpec> {
    let ConnectInput { tag, item } = input;
    let mut errors = Errors::default();
    if let Some(tag) = &tag {
        let value = tag.value();
        if value.is_empty() {
            errors.push(Error::new(
                tag.span(),
                "a connection tag cannot be empty: leave it out to use the function's name",
            ));
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push(Error::new(
                tag.span(),
                "a connection tag cannot contain whitespace (it is the name peers call)",
            ));
        }
    }
    errors.check(signature(&item.sig, CONNECT));
    let mut params = Vec::new();
    for input in &item.sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                errors.push(Error::new_spanned(
                    receiver,
                    "#[net::connect] functions cannot take `self`: use a free function",
                ));
                continue;
            }
            FnArg::Typed(typed) => typed,
        };
        errors.check(owned(&typed.ty));
        match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                params.push((pat.ident.clone(), (*typed.ty).clone()));
            }
            other => errors.push(Error::new_spanned(
                other,
                "#[net::connect] parameters must be plain names (`name: Type`), not patterns",
            )),
        }
    }
    let ret = match &item.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => {
            errors.check(owned(ty));
            Some((**ty).clone())
        }
    };
    let rust_name = item.sig.ident.unraw().to_string();
    let name = tag.map(|t| t.value()).unwrap_or_else(|| rust_name.clone());
    errors.finish(ConnectSpec {
        item,
        name,
        rust_name,
        params,
        ret,
    })
}

pub fn entry(input: EntryInput) -> syn::Result<EntrySpec> {
    let EntryInput { args, item } = input;
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.push(Error::new_spanned(
            args,
            "#[net::entry] takes no arguments: the entry's name is the function's name",
        ));
    }
    errors.check(signature(&item.sig, ENTRY));
    if !item.sig.inputs.is_empty() {
        errors.push(Error::new_spanned(
            &item.sig.inputs,
            "#[net::entry] functions take no parameters: `netrun run APP --entry NAME` passes none",
        ));
    }
    if let ReturnType::Type(_, ty) = &item.sig.output {
        errors.check(owned(ty));
    }
    let name = item.sig.ident.unraw().to_string();
    errors.finish(EntrySpec { item, name })
}

/// What no exported function can be: async, unsafe, `extern`, generic, variadic.
fn signature(sig: &Signature, what: &str) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(token) = &sig.asyncness {
        errors.push(Error::new(
            token.span(),
            format!(
                "{what} functions cannot be async: a peer runs one call at a time, to completion"
            ),
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(Error::new(
            token.span(),
            format!(
                "{what} functions cannot be unsafe: another peer could not uphold its contract"
            ),
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            format!("{what} functions cannot declare an ABI: the macro writes the exports"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(Error::new_spanned(
            &sig.generics,
            format!("{what} functions cannot be generic: their exports need concrete types"),
        ));
    }
    if let Some(dots) = &sig.variadic {
        errors.push(Error::new_spanned(
            dots,
            format!("{what} functions cannot be variadic"),
        ));
    }
    errors.finish(())
}

/// Parameters and results cross the wire, so they must be owned types: no references, no
/// `impl Trait`, no trait objects, no bare functions, checked all the way down.
fn owned(ty: &Type) -> syn::Result<()> {
    let reason = match ty {
        Type::Reference(_) => Some(
            "references cannot cross the wire: use an owned type (`String`, `Vec<T>`, …) that serde can decode",
        ),
        Type::ImplTrait(_) => {
            Some("`impl Trait` has no concrete type the other peer could decode: name the type")
        }
        Type::TraitObject(_) => Some("trait objects cannot be serialized: use a concrete type"),
        Type::BareFn(_) => Some("functions cannot cross the wire"),
        Type::Ptr(_) => Some("raw pointers cannot cross the wire"),
        Type::Never(_) => Some("`!` cannot be sent: return a type"),
        Type::Infer(_) => Some("`_` is not a type the other peer could decode: name the type"),
        Type::Macro(_) => Some("write the type out: a macro in type position cannot be checked"),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(Error::new_spanned(ty, reason));
    }
    let mut inner = Vec::new();
    match ty {
        Type::Paren(t) => inner.push(&*t.elem),
        Type::Group(t) => inner.push(&*t.elem),
        Type::Array(t) => inner.push(&*t.elem),
        Type::Slice(t) => inner.push(&*t.elem),
        Type::Tuple(t) => inner.extend(t.elems.iter()),
        Type::Path(p) => {
            if let Some(qself) = &p.qself {
                inner.push(&*qself.ty);
            }
            for segment in &p.path.segments {
                match &segment.arguments {
                    syn::PathArguments::AngleBracketed(args) => {
                        inner.extend(args.args.iter().filter_map(|arg| match arg {
                            syn::GenericArgument::Type(t) => Some(t),
                            _ => None,
                        }));
                    }
                    syn::PathArguments::Parenthesized(args) => {
                        return Err(Error::new_spanned(
                            args,
                            "closures and `Fn` traits cannot cross the wire",
                        ));
                    }
                    syn::PathArguments::None => {}
                }
            }
        }
        _ => {}
    }
    let mut errors = Errors::default();
    for ty in inner {
        errors.check(owned(ty));
    }
    errors.finish(())
}

/// A span for generated items that should point at the function's name.
pub fn name_span(item: &ItemFn) -> Span {
    item.sig.ident.span()
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;
    use crate::parse;

    fn connect(
        attr: proc_macro2::TokenStream,
        item: proc_macro2::TokenStream,
    ) -> syn::Result<ConnectSpec> {
        parse::connect(attr, item).and_then(super::connect)
    }

    #[test]
    fn the_tag_is_the_registered_name_and_raw_names_lose_their_prefix() {
        let spec = connect(
            quote!("renamed"),
            quote!(
                fn r#type(x: u32) -> u32 {
                    x
                }
            ),
        )
        .unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.rust_name.as_str()),
            ("renamed", "type")
        );
        let spec = connect(
            quote!(),
            quote!(
                fn r#type(mut x: u32) {}
            ),
        )
        .unwrap();
        assert_eq!(spec.name, "type");
        assert_eq!(spec.params[0].0, "x");
        assert!(spec.ret.is_none());
    }

    #[test]
    fn independent_mistakes_are_reported_together() {
        let Err(error) = connect(
            quote!(),
            quote!(
                async fn f(a: &str, (b, c): (u8, u8)) {}
            ),
        ) else {
            panic!("expected errors");
        };
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("async"));
        assert!(messages[1].contains("references"));
        assert!(messages[2].contains("plain names"));
    }

    #[test]
    fn nested_references_are_found() {
        let error = connect(
            quote!(),
            quote!(
                fn f(x: Option<Vec<(u8, &'static str)>>) {}
            ),
        )
        .err()
        .expect("a reference deep inside");
        assert!(error.to_string().contains("references"));
    }

    #[test]
    fn entries_take_nothing() {
        let entry = |attr, item| parse::entry(attr, item).and_then(super::entry);
        assert_eq!(
            entry(
                quote!(),
                quote!(
                    fn go() {}
                )
            )
            .unwrap()
            .name,
            "go"
        );
        assert!(
            entry(
                quote!(x),
                quote!(
                    fn go() {}
                )
            )
            .is_err()
        );
        assert!(
            entry(
                quote!(),
                quote!(
                    fn go(n: u32) {}
                )
            )
            .is_err()
        );
    }
}
