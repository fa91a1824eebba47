//! First stage: reads the attribute's arguments and the item it is applied to, as syntax only.
//! Whether what was read makes sense for the ABI is [`crate::validate`]'s job.

use proc_macro2::TokenStream;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Error, Expr, Item, ItemFn, Lit, LitBool, LitStr, Token};

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

/// What `#[net::event("name")]` or `#[net::flag("NAME")]` was applied to: a required name.
pub struct NamedInput {
    pub name: LitStr,
    pub item: ItemFn,
}

/// What `#[net::subscribe("event", filters…)]` was applied to, as written.
pub struct SubscribeInput {
    pub event: LitStr,
    pub groups: Vec<LitStr>,
    pub hubs_only: bool,
    pub on_host: bool,
    pub peers: Vec<LitStr>,
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

/// `#[net::event("name")]` and `#[net::flag("NAME")]` (`macro_name` is `event` or `flag`):
/// exactly one string literal.
pub fn named(attr: TokenStream, item: TokenStream, macro_name: &str) -> syn::Result<NamedInput> {
    let usage = format!("expected #[net::{macro_name}(\"name\")]: the name is one string literal");
    let what = format!("#[net::{macro_name}]");
    let name = (|input: ParseStream| {
        if !input.peek(LitStr) {
            return Err(input.error(&usage));
        }
        let name: LitStr = input.parse()?;
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            return Err(Error::new_spanned(rest, &usage));
        }
        Ok(name)
    })
    .parse2(attr)?;
    let item = function(item, &what)?;
    Ok(NamedInput { name, item })
}

/// `#[net::subscribe("event", groups = ["a"], hubs_only = true, on_host = true, peers = ["…"])]`.
pub fn subscribe(attr: TokenStream, item: TokenStream) -> syn::Result<SubscribeInput> {
    const USAGE: &str = "expected #[net::subscribe(\"event\", groups = [\"g\", …], hubs_only = true, on_host = true, peers = [\"peer id or host:port\", …])]";
    let parser = |input: ParseStream| {
        if !input.peek(LitStr) {
            return Err(input.error(USAGE));
        }
        let event: LitStr = input.parse()?;
        let mut spec = SubscribeInput {
            event,
            groups: Vec::new(),
            hubs_only: false,
            on_host: false,
            peers: Vec::new(),
            item: syn::parse_quote!(
                fn placeholder() {}
            ),
        };
        if input.is_empty() {
            return Ok(spec);
        }
        input.parse::<Token![,]>()?;
        let filters = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(input)?;
        for filter in filters {
            let key = filter
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "groups" => spec.groups = strings(&filter.value)?,
                "peers" => spec.peers = strings(&filter.value)?,
                "hubs_only" => spec.hubs_only = boolean(&filter.value)?.value,
                "on_host" => spec.on_host = boolean(&filter.value)?.value,
                _ => {
                    return Err(Error::new_spanned(
                        &filter.path,
                        "unknown filter: #[net::subscribe] takes groups, hubs_only, on_host and peers",
                    ));
                }
            }
        }
        Ok(spec)
    };
    let mut spec = parser.parse2(attr)?;
    spec.item = function(item, "#[net::subscribe]")?;
    Ok(spec)
}

/// `["a", "b"]`, or a single `"a"`.
fn strings(value: &Expr) -> syn::Result<Vec<LitStr>> {
    let expected =
        || Error::new_spanned(value, "expected a list of string literals: [\"a\", \"b\"]");
    let literal = |e: &Expr| match e {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => Ok(s.clone()),
            _ => Err(expected()),
        },
        _ => Err(expected()),
    };
    match value {
        Expr::Array(array) => array.elems.iter().map(literal).collect(),
        other => Ok(vec![literal(other)?]),
    }
}

fn boolean(value: &Expr) -> syn::Result<LitBool> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.clone()),
        other => Err(Error::new_spanned(other, "expected `true` or `false`")),
    }
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
