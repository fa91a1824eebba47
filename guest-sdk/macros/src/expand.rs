//! Writes the code a validated function needs: the exports the runtime calls, the manifest
//! record (a custom section computed here, at compile time) and, for connected functions, the
//! remote stub. Names in generated code are absolute (`::net::__private::…`).

use netrun_abi::manifest::{ItemKind, Param, Record};
use netrun_abi::names;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, Type};

use crate::parse::{ConnectSpec, EntrySpec, name_span};

pub fn connect(spec: &ConnectSpec) -> TokenStream {
    let ConnectSpec {
        item,
        name,
        params,
        ret,
    } = spec;
    let ident = &item.sig.ident;
    let vis = &item.vis;
    let names: Vec<_> = params.iter().map(|(n, _)| n).collect();
    let types: Vec<_> = params.iter().map(|(_, t)| t).collect();
    let ret_ty = match ret {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let record = Record::new(
        ItemKind::Connect,
        name,
        &ident.to_string(),
        params
            .iter()
            .map(|(n, t)| Param {
                name: n.to_string(),
                ty: quote!(#t).to_string(),
            })
            .collect(),
        &ret_ty.to_string(),
    );
    let signature = record.type_signature();
    let fingerprint = record.fingerprint;
    let manifest = manifest_static(&record, item);
    let fn_export = format!("{}{name}", names::EXPORT_FN_PREFIX);
    let json_export = format!("{}{name}", names::EXPORT_JSON_PREFIX);
    let serde_checks = types.iter().copied().chain(ret.as_ref()).map(serde_check);
    let stub_doc = format!(
        "Runs [`{ident}`](fn@{ident}) on another peer (registered as `{name}`): `{ident}::on(&peer, …)`."
    );
    quote! {
        #item

        #[doc = #stub_doc]
        #vis mod #ident {
            #[allow(unused_imports)]
            use super::*;

            /// Calls the function on `peer`; returns its result, or why the call failed.
            #[allow(clippy::too_many_arguments)]
            pub fn on(
                peer: &::net::Peer,
                #(#names: #types),*
            ) -> ::core::result::Result<#ret_ty, ::net::Error> {
                ::net::__private::call_remote(peer, #name, &(#(#names,)*), #fingerprint, #signature)
            }
        }

        const _: () = {
            #[unsafe(export_name = #fn_export)]
            extern "C" fn __netrun_bincode(ptr: i32, len: i32) -> i64 {
                ::net::__private::serve_bincode(
                    #name, #signature, ptr, len,
                    |(#(#names,)*): (#(#types,)*)| #ident(#(#names),*),
                )
            }

            #[unsafe(export_name = #json_export)]
            extern "C" fn __netrun_json(ptr: i32, len: i32) -> i64 {
                ::net::__private::serve_json(
                    #name, #signature, ptr, len,
                    |(#(#names,)*): (#(#types,)*)| #ident(#(#names),*),
                )
            }

            #manifest
        };

        #(#serde_checks)*
    }
}

pub fn entry(spec: &EntrySpec) -> TokenStream {
    let item = &spec.item;
    let ident = &item.sig.ident;
    let name = ident.to_string();
    let ret = match &item.sig.output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    let record = Record::new(ItemKind::Entry, &name, &name, Vec::new(), &ret.to_string());
    let manifest = manifest_static(&record, item);
    let export = format!("{}{name}", names::EXPORT_ENTRY_PREFIX);
    let ret_check = match &item.sig.output {
        syn::ReturnType::Default => quote!(),
        syn::ReturnType::Type(_, ty) => quote_spanned! {ty.span()=>
            const _: fn() = || {
                fn entry_returns_unit_or_result<T: ::net::__private::EntryResult>() {}
                entry_returns_unit_or_result::<#ty>();
            };
        },
    };
    quote! {
        #item

        const _: () = {
            #[unsafe(export_name = #export)]
            extern "C" fn __netrun_entry() -> i64 {
                ::net::__private::serve_entry(#name, #ident)
            }

            #manifest
        };

        #ret_check
    }
}

/// The record as a `#[used]` static in the manifest custom section.
fn manifest_static(record: &Record, item: &ItemFn) -> TokenStream {
    let bytes = record.to_section_bytes();
    let len = bytes.len();
    let section = names::MANIFEST_SECTION;
    quote_spanned! {name_span(item)=>
        #[used]
        #[unsafe(link_section = #section)]
        static __NETRUN_MANIFEST_RECORD: [u8; #len] = [#(#bytes),*];
    }
}

/// A compile error pointing at `ty` when it is not a serde type both ways.
fn serde_check(ty: &Type) -> TokenStream {
    quote_spanned! {ty.span()=>
        const _: fn() = || {
            fn crosses_the_wire<T: ::net::__private::serde::Serialize + ::net::__private::serde::de::DeserializeOwned>() {}
            crosses_the_wire::<#ty>();
        };
    }
}
