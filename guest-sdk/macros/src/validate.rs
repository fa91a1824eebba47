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

use netrun_abi::manifest::Subscription;
use syn::LitStr;

use crate::parse::{ConnectInput, EntryInput, NamedInput, SubscribeInput};

/// A validated `#[net::connect]` function.
pub struct ConnectSpec {
    pub item: ItemFn,
    /// Registered name: the tag, or the Rust name.
    pub name: String,
    /// The Rust name, without `r#`.
    pub rust_name: String,
    pub params: Vec<(Ident, Type)>,
    /// `None` for `()`; `T` for `Result<T, net::Flag>`.
    pub ret: Option<Type>,
    /// Returns `Result<T, net::Flag>`: answers a value or a flag.
    pub flagged: bool,
}

/// A validated function of another kind (event, flag handler, subscription handler).
pub struct FnSpec {
    pub item: ItemFn,
    /// Registered name: the event's or the flag's, or the handler's Rust name.
    pub name: String,
    /// The Rust name, without `r#`.
    pub rust_name: String,
    pub params: Vec<(Ident, Type)>,
    /// `None` for `()`.
    pub ret: Option<Type>,
}

/// A validated `#[net::subscribe]` handler.
pub struct SubscribeSpec {
    pub function: FnSpec,
    pub subscription: Subscription,
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
const EVENT: &str = "#[net::event]";
const FLAG: &str = "#[net::flag]";
const SUBSCRIBE: &str = "#[net::subscribe]";

pub fn connect(input: ConnectInput) -> syn::Result<ConnectSpec> {
    let ConnectInput { tag, item } = input;
    let mut errors = Errors::default();
    if let Some(tag) = &tag {
        errors.check(registered_name(
            tag,
            "connection tag",
            "leave it out to use the function's name",
        ));
    }
    let (params, ret) = shape(&item, CONNECT, &mut errors);
    let (ret, flagged) = match ret {
        Some(ty) => match flagged_result(&ty) {
            Some(ok) => (Some(ok), true),
            None => (Some(ty), false),
        },
        None => (None, false),
    };
    let rust_name = item.sig.ident.unraw().to_string();
    let name = tag.map(|t| t.value()).unwrap_or_else(|| rust_name.clone());
    errors.finish(ConnectSpec {
        item,
        name,
        rust_name,
        params,
        ret,
        flagged,
    })
}

/// `#[net::event("name")]`: a function whose return value is the event's payload.
pub fn event(input: NamedInput) -> syn::Result<FnSpec> {
    named(input, EVENT, "event name")
}

/// `#[net::flag("NAME")]`: a handler taking `(function: String, peer: net::Peer)`, or nothing.
pub fn flag(input: NamedInput) -> syn::Result<FnSpec> {
    let spec = named(input, FLAG, "flag name")?;
    if !matches!(spec.params.len(), 0 | 2) {
        return Err(Error::new_spanned(
            &spec.item.sig.inputs,
            "a #[net::flag] handler takes `(function: String, peer: net::Peer)` (the call that \
             answered with the flag), or no parameters",
        ));
    }
    Ok(spec)
}

/// `#[net::subscribe("event", filters…)]`: a handler registered under its Rust name.
pub fn subscribe(input: SubscribeInput) -> syn::Result<SubscribeSpec> {
    let SubscribeInput {
        event,
        groups,
        hubs_only,
        on_host,
        peers,
        item,
    } = input;
    let mut errors = Errors::default();
    errors.check(registered_name(
        &event,
        "event name",
        "name the event to subscribe to",
    ));
    for group in &groups {
        if group.value().is_empty() {
            errors.push(Error::new(group.span(), "a group name cannot be empty"));
        }
    }
    let (params, ret) = shape(&item, SUBSCRIBE, &mut errors);
    let rust_name = item.sig.ident.unraw().to_string();
    errors.finish(SubscribeSpec {
        function: FnSpec {
            item,
            name: rust_name.clone(),
            rust_name,
            params,
            ret,
        },
        subscription: Subscription {
            event: event.value(),
            groups: groups.iter().map(LitStr::value).collect(),
            hubs_only,
            on_host,
            peers: peers.iter().map(LitStr::value).collect(),
        },
    })
}

fn named(input: NamedInput, what: &str, name_is: &str) -> syn::Result<FnSpec> {
    let NamedInput { name, item } = input;
    let mut errors = Errors::default();
    errors.check(registered_name(&name, name_is, "give it a name"));
    let (params, ret) = shape(&item, what, &mut errors);
    let rust_name = item.sig.ident.unraw().to_string();
    errors.finish(FnSpec {
        item,
        name: name.value(),
        rust_name,
        params,
        ret,
    })
}

/// A name peers use: not empty, no whitespace.
fn registered_name(name: &LitStr, what: &str, if_empty: &str) -> syn::Result<()> {
    let value = name.value();
    if value.is_empty() {
        return Err(Error::new(
            name.span(),
            format!("the {what} cannot be empty: {if_empty}"),
        ));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::new(
            name.span(),
            format!("the {what} cannot contain whitespace (it is the name peers call)"),
        ));
    }
    Ok(())
}

/// The parameters and return type of a function whose values cross the wire; each misuse is
/// pushed to `errors`.
fn shape(item: &ItemFn, what: &str, errors: &mut Errors) -> (Vec<(Ident, Type)>, Option<Type>) {
    errors.check(signature(&item.sig, what));
    let mut params = Vec::new();
    for input in &item.sig.inputs {
        let typed = match input {
            FnArg::Receiver(receiver) => {
                errors.push(Error::new_spanned(
                    receiver,
                    format!("{what} functions cannot take `self`: use a free function"),
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
                format!("{what} parameters must be plain names (`name: Type`), not patterns"),
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
    (params, ret)
}

/// `T` when `ty` is `Result<T, Flag>` (any path ending in `Flag`): such a function answers
/// either a value or a flag.
fn flagged_result(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let (ok, err) = (types.next()?, types.next()?);
    match err {
        Type::Path(err) if err.path.segments.last()?.ident == "Flag" => Some(ok.clone()),
        _ => None,
    }
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
        let message = |attr, item| match entry(attr, item) {
            Ok(spec) => panic!("entry {} accepted", spec.name),
            Err(e) => e.to_string(),
        };
        assert_eq!(
            message(
                quote!(x),
                quote!(
                    fn go() {}
                )
            ),
            "#[net::entry] takes no arguments: the entry's name is the function's name"
        );
        assert_eq!(
            message(
                quote!(),
                quote!(
                    fn go(n: u32) {}
                )
            ),
            "#[net::entry] functions take no parameters: `netrun run APP --entry NAME` passes none"
        );
    }
}
