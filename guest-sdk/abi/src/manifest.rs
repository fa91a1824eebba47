//! The module manifest: what a module offers, readable without running guest code.
//!
//! The SDK's macros emit one record per item into the custom section
//! [`crate::names::MANIFEST_SECTION`]; the linker concatenates them. A record is framed as
//! `b"nrmf"`, the ABI version (u32 little-endian), the payload length (u32 little-endian), then
//! the payload: a [`Record`] encoded with [`crate::codec`]. Zero bytes between records (linker
//! padding) are skipped. Framing comes first so that a module built for another ABI version is
//! reported as such, never misread.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::names::ABI_VERSION;

/// Marks the start of a record.
pub const RECORD_MAGIC: [u8; 4] = *b"nrmf";

/// What kind of item a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemKind {
    /// `#[net::connect]`: callable locally and by other peers.
    Connect,
    /// `#[net::entry]`: run by `netrun run APP --entry NAME`.
    Entry,
    /// `#[net::event("name")]`: its return value goes to the event's subscribers. Registered
    /// under the event's name; `ret` is what subscribers receive. No export.
    Event,
    /// `#[net::subscribe("event", …)]`: a handler the peer registers on matching peers.
    /// Registered under its Rust name; `subscription` says which event and which peers.
    Subscribe,
    /// `#[net::flag("NAME")]`: runs on the caller's side when a remote function answers with
    /// the flag `NAME`; its return value becomes the call's result.
    Flag,
}

impl ItemKind {
    /// What an item of this kind is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            ItemKind::Connect => "connected function",
            ItemKind::Entry => "entry",
            ItemKind::Event => "event",
            ItemKind::Subscribe => "subscription handler",
            ItemKind::Flag => "flag handler",
        }
    }
}

/// Where a subscription handler is registered: the event, and which peers (the original's
/// filters). With explicit `peers`, only those; otherwise every peer discovery finds that
/// matches `groups` (empty: any), `hubs_only` and `on_host`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub event: String,
    pub groups: Vec<String>,
    pub hubs_only: bool,
    pub on_host: bool,
    /// Peer ids, or `host:port` addresses.
    pub peers: Vec<String>,
}

/// One parameter: its name and its type as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub ty: String,
}

/// One item the module offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kind: ItemKind,
    /// Registered name: the tag if given, else the Rust name.
    pub name: String,
    /// The Rust function's name.
    pub rust_name: String,
    pub params: Vec<Param>,
    /// Return type as written (`()` when there is none).
    pub ret: String,
    /// [`fingerprint`] of [`type_signature`] of the parameter and return types.
    pub fingerprint: u64,
    /// For [`ItemKind::Subscribe`]: the event and the filters.
    pub subscription: Option<Subscription>,
}

impl Record {
    /// Builds a record, computing its fingerprint.
    pub fn new(kind: ItemKind, name: &str, rust_name: &str, params: Vec<Param>, ret: &str) -> Self {
        let ret = normalize_type(ret);
        let params: Vec<Param> = params
            .into_iter()
            .map(|p| Param {
                name: p.name,
                ty: normalize_type(&p.ty),
            })
            .collect();
        let types: Vec<&str> = params.iter().map(|p| p.ty.as_str()).collect();
        let fingerprint = fingerprint(&type_signature(&types, &ret));
        Record {
            kind,
            name: name.to_string(),
            rust_name: rust_name.to_string(),
            params,
            ret,
            fingerprint,
            subscription: None,
        }
    }

    /// The record of a subscription handler.
    pub fn with_subscription(mut self, subscription: Subscription) -> Self {
        self.subscription = Some(subscription);
        self
    }

    /// The one type the arguments form, as a sender of them would write it: the single
    /// parameter's type, or the tuple of all of them (`()` for none). An event whose return
    /// type is this feeds this handler: bincode encodes a value and a one-element tuple of it
    /// alike.
    pub fn accepts(&self) -> String {
        match self.params.as_slice() {
            [one] => one.ty.clone(),
            many => {
                let types: Vec<&str> = many.iter().map(|p| p.ty.as_str()).collect();
                format!("({})", types.join(", "))
            }
        }
    }

    /// The return type a contract's signature names: `u32` in `(String) -> u32`.
    pub fn signature_return(signature: &str) -> &str {
        signature
            .rsplit_once(" -> ")
            .map_or(signature, |(_, ret)| ret)
    }

    /// The types only, as fingerprinted: `(String, u32) -> Vec<u8>`.
    pub fn type_signature(&self) -> String {
        let types: Vec<&str> = self.params.iter().map(|p| p.ty.as_str()).collect();
        type_signature(&types, &self.ret)
    }

    /// The signature with parameter names, for people: `greet(name: String) -> String`.
    pub fn display_signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.ty))
            .collect();
        format!("{}({}) -> {}", self.name, params.join(", "), self.ret)
    }

    /// Frames this record for the manifest section.
    pub fn to_section_bytes(&self) -> Vec<u8> {
        let payload = codec::encode(self).expect("a manifest record always encodes");
        let mut out = Vec::with_capacity(12 + payload.len());
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&ABI_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// Why a manifest section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest record at byte {offset} is truncated")]
    Truncated { offset: usize },
    #[error("manifest has unexpected bytes at byte {offset} (not a netrun manifest record)")]
    BadMagic { offset: usize },
    #[error(
        "module was built for netrun guest ABI version {found}, but this runtime speaks version {expected}: {}",
        if found < expected {
            "rebuild the app against the `net` crate of this netrun"
        } else {
            "run it with the netrun its `net` crate comes with"
        }
    )]
    AbiVersion { found: u32, expected: u32 },
    #[error("manifest record at byte {offset} is unreadable: {message}")]
    Record { offset: usize, message: String },
}

/// Reads every record of a manifest section's bytes.
pub fn decode_section(bytes: &[u8]) -> Result<Vec<Record>, ManifestError> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == 0 {
            at += 1;
            continue;
        }
        if !bytes[at..].starts_with(&RECORD_MAGIC[..(bytes.len() - at).min(4)]) {
            return Err(ManifestError::BadMagic { offset: at });
        }
        let header = bytes
            .get(at..at + 12)
            .ok_or(ManifestError::Truncated { offset: at })?;
        let version = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if version != ABI_VERSION {
            return Err(ManifestError::AbiVersion {
                found: version,
                expected: ABI_VERSION,
            });
        }
        let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let payload = bytes
            .get(at + 12..at + 12 + len)
            .ok_or(ManifestError::Truncated { offset: at })?;
        let record = codec::decode::<Record>(payload).map_err(|e| ManifestError::Record {
            offset: at,
            message: e.to_string(),
        })?;
        records.push(record);
        at += 12 + len;
    }
    Ok(records)
}

/// Removes the spacing a token printer puts into types (`Vec < u8 >` becomes `Vec<u8>`), keeping
/// one space where two words would otherwise merge (`dyn Trait`, `&'a mut T`).
pub fn normalize_type(ty: &str) -> String {
    let mut out = String::with_capacity(ty.len());
    let mut pending_space = false;
    for c in ty.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        let word = |ch: char| ch.is_alphanumeric() || ch == '_';
        if pending_space && out.chars().last().is_some_and(word) && word(c) {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
        if c == ',' {
            out.push(' ');
        }
    }
    out
}

/// `(A, B) -> R` from parameter and return types.
pub fn type_signature(params: &[&str], ret: &str) -> String {
    format!("({}) -> {}", params.join(", "), ret)
}

/// FNV-1a (64 bit) of a type signature: stable across builds, platforms and Rust versions.
pub fn fingerprint(type_signature: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in type_signature.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, ty: &str) -> Record {
        Record::new(
            ItemKind::Connect,
            name,
            name,
            vec![Param {
                name: "x".into(),
                ty: ty.into(),
            }],
            "Vec < u8 >",
        )
    }

    #[test]
    fn sections_concatenate_and_skip_padding() {
        let mut section = record("a", "String").to_section_bytes();
        section.extend_from_slice(&[0, 0, 0]);
        section.extend(record("b", "u32").to_section_bytes());
        let records = decode_section(&section).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].display_signature(), "b(x: u32) -> Vec<u8>");
        assert_ne!(records[0].fingerprint, records[1].fingerprint);
    }

    #[test]
    fn another_abi_version_is_named() {
        let mut section = record("a", "String").to_section_bytes();
        section[4..8].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(
            decode_section(&section),
            Err(ManifestError::AbiVersion {
                found: 99,
                expected: ABI_VERSION
            })
        );
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let section = record("a", "String").to_section_bytes();
        assert!(matches!(
            decode_section(&section[..section.len() - 1]),
            Err(ManifestError::Truncated { .. })
        ));
        assert!(matches!(
            decode_section(b"junk"),
            Err(ManifestError::BadMagic { offset: 0 })
        ));
    }

    #[test]
    fn subscription_records_round_trip_and_say_what_they_accept() {
        let handler = Record::new(
            ItemKind::Subscribe,
            "on_news",
            "on_news",
            vec![Param {
                name: "message".into(),
                ty: "String".into(),
            }],
            "()",
        )
        .with_subscription(Subscription {
            event: "news".into(),
            hubs_only: true,
            ..Default::default()
        });
        let back = decode_section(&handler.to_section_bytes()).unwrap();
        assert_eq!(back, std::slice::from_ref(&handler));
        assert_eq!(handler.accepts(), "String");
        let two = record("pair", "u8");
        assert_eq!(two.accepts(), "u8");
        let none = Record::new(ItemKind::Subscribe, "tick", "tick", Vec::new(), "()");
        assert_eq!(none.accepts(), "()");
        assert_eq!(Record::signature_return("(String) -> Vec<u8>"), "Vec<u8>");
    }

    #[test]
    fn normalizes_token_spacing() {
        assert_eq!(normalize_type("Vec < (u8 , String) >"), "Vec<(u8, String)>");
        assert_eq!(normalize_type("& 'static str"), "&'static str");
        assert_eq!(
            normalize_type("Option < Box < dyn Any > >"),
            "Option<Box<dyn Any>>"
        );
    }
}
