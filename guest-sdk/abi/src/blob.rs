//! [`Blob`]: a byte string that crosses between guests beside the encoding of the value that
//! holds it, not inside it, and the two scopes in which it does.
//!
//! A `ByteBuf` of 8 MiB sent from one guest to another is passed over four times besides the
//! kernel's copies: the sender's guest encodes it, its host copies the encoding out of guest
//! memory, the receiver's host copies it into guest memory, the receiver's guest decodes it into
//! a buffer of its own. A `Blob` of [`BESIDE_MIN`] bytes or more is passed over twice: while a
//! guest encodes a call's arguments or a result ([`sending`]), the `Blob` hands its bytes to the
//! host where they lie (the host copies them out, once) and leaves only its length in the
//! encoding; while a guest decodes a call's arguments or a result ([`receiving`]), a `Blob`
//! that travelled beside is taken from the host in a buffer of its own (the host copies it in,
//! once), which the `Blob` then owns as it is.
//!
//! Outside those scopes (an event's value, JSON, the host's own encodings) a `Blob` is its
//! bytes inline, like a `ByteBuf`. How a payload that carries blobs is laid out is
//! [`layout`]'s.

use std::cell::Cell;
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

pub mod layout;

/// A `Blob` of at least this many bytes travels beside its value in a call's arguments or
/// result; a shorter one is encoded inline (a host call costs more than copying it).
pub const BESIDE_MIN: usize = 64 * 1024;

/// Bytes, sent between guests in fewer passes than a `Vec<u8>` or a `ByteBuf` when large (see
/// the module docs): the SDK's `net::Bytes`. It has `serde_bytes::ByteBuf`'s API (what
/// `net::Bytes` was before): derefs to `Vec<u8>`, converts from anything that converts into
/// one, compares with anything that is bytes.
///
/// ```
/// use netrun_abi::blob::Blob;
/// let blob = Blob::from(vec![1u8, 2, 3]);
/// assert_eq!(&blob[..], &[1, 2, 3]);
/// assert_eq!(blob.len(), 3);
/// assert!(blob == [1u8, 2, 3] && Blob::from("hi") == *b"hi");
/// let bytes: Vec<u8> = blob.into_vec();
/// assert_eq!(bytes, [1, 2, 3]);
/// ```
#[derive(Clone, Default, Eq, Hash, Ord)]
pub struct Blob(Vec<u8>);

impl Blob {
    /// An empty blob.
    pub fn new() -> Blob {
        Blob(Vec::new())
    }

    /// An empty blob with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Blob {
        Blob(Vec::with_capacity(capacity))
    }

    /// The bytes, as the `Vec` that holds them (not copied).
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The bytes, as a boxed slice.
    pub fn into_boxed_slice(self) -> Box<[u8]> {
        self.0.into_boxed_slice()
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl<T: Into<Vec<u8>>> From<T> for Blob {
    fn from(bytes: T) -> Blob {
        Blob(bytes.into())
    }
}

impl<Rhs: AsRef<[u8]> + ?Sized> PartialEq<Rhs> for Blob {
    fn eq(&self, other: &Rhs) -> bool {
        self.0.as_slice() == other.as_ref()
    }
}

impl<Rhs: AsRef<[u8]> + ?Sized> PartialOrd<Rhs> for Blob {
    fn partial_cmp(&self, other: &Rhs) -> Option<std::cmp::Ordering> {
        self.0.as_slice().partial_cmp(other.as_ref())
    }
}

impl IntoIterator for Blob {
    type Item = u8;
    type IntoIter = std::vec::IntoIter<u8>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Blob {
    type Item = &'a u8;
    type IntoIter = std::slice::Iter<'a, u8>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Deref for Blob {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Blob {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl std::borrow::Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for Blob {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// Hands the host blob number `index` (from 0 in each value) of the value being encoded.
pub type Sink = fn(bytes: &[u8], index: u32);

/// Takes blob number `index`, of `len` bytes, of the value being decoded from the host, in a
/// buffer of its own; `None` when no such blob came with it.
pub type Source = fn(index: u32, len: usize) -> Option<Vec<u8>>;

/// What a `Blob` does with its bytes on this thread now.
#[derive(Clone, Copy)]
enum Scope {
    /// Inline, both ways.
    Inline,
    /// Encoding a call's arguments or result: large blobs go to `sink`; `next` is the index of
    /// the next one.
    Sending { sink: Sink, next: u32 },
    /// Decoding a call's arguments or result: blobs that travelled beside come from `source`.
    Receiving { source: Source, next: u32 },
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::Inline) };
    /// Set while a value is only measured ([`crate::codec::encoded_len`]): a large blob then
    /// takes the room it will take, and is not handed over.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
}

/// Puts back what a scope replaced when it ends, even by a panic.
struct Restore<T: Copy + 'static>(&'static std::thread::LocalKey<Cell<T>>, T);

impl<T: Copy + 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        self.0.with(|cell| cell.set(self.1));
    }
}

fn enter<T: Copy + 'static>(key: &'static std::thread::LocalKey<Cell<T>>, value: T) -> Restore<T> {
    Restore(key, key.with(|cell| cell.replace(value)))
}

/// Runs `encode`, the encoding of a call's arguments or result, with every `Blob` of
/// [`BESIDE_MIN`] bytes or more in it handed to `sink` where it lies, in order, instead of
/// encoded.
pub fn sending<R>(sink: Sink, encode: impl FnOnce() -> R) -> R {
    let _restore = enter(&SCOPE, Scope::Sending { sink, next: 0 });
    encode()
}

/// Runs `decode`, the decoding of a call's arguments or result, with every `Blob` that
/// travelled beside it taken from `source`, in order.
pub fn receiving<R>(source: Source, decode: impl FnOnce() -> R) -> R {
    let _restore = enter(&SCOPE, Scope::Receiving { source, next: 0 });
    decode()
}

/// Runs `measure`, which only sizes an encoding: blobs are not handed over.
pub(crate) fn measuring<R>(measure: impl FnOnce() -> R) -> R {
    let _restore = enter(&MEASURING, true);
    measure()
}

/// True when `len` bytes go beside the value being encoded; hands them over unless the value
/// is only measured.
fn goes_beside(bytes: &[u8]) -> bool {
    if bytes.len() < BESIDE_MIN {
        return false;
    }
    SCOPE.with(|scope| match scope.get() {
        Scope::Sending { sink, next } => {
            if !MEASURING.with(Cell::get) {
                sink(bytes, next);
                scope.set(Scope::Sending {
                    sink,
                    next: next + 1,
                });
            }
            true
        }
        _ => false,
    })
}

/// The blob of `len` bytes that travelled beside the value being decoded.
fn take_beside<E: de::Error>(len: u64) -> Result<Vec<u8>, E> {
    SCOPE.with(|scope| match scope.get() {
        Scope::Receiving { source, next } => {
            scope.set(Scope::Receiving {
                source,
                next: next + 1,
            });
            let len = usize::try_from(len).map_err(|_| E::custom("a blob too long for memory"))?;
            source(next, len).ok_or_else(|| {
                E::custom(format!(
                    "blob {next} of {len} bytes did not come with the value"
                ))
            })
        }
        _ => Err(E::custom(format!(
            "a blob of {len} bytes travelled beside a value that is not a call's arguments or result"
        ))),
    })
}

/// In bincode a `Blob` is the pair `(beside, inline)`: `(0, bytes)` inline, or `(len, [])`
/// when its `len` bytes travel beside the value. In a human-readable format (JSON) it is its
/// bytes, as `serde_bytes` writes them.
impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            return serde_bytes::serialize(&self.0, serializer);
        }
        if goes_beside(&self.0) {
            (self.0.len() as u64, serde_bytes::Bytes::new(&[])).serialize(serializer)
        } else {
            (0u64, serde_bytes::Bytes::new(&self.0)).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        if deserializer.is_human_readable() {
            return serde_bytes::ByteBuf::deserialize(deserializer).map(|b| Blob(b.into_vec()));
        }
        deserializer.deserialize_tuple(2, Pair)
    }
}

/// Reads a `Blob`'s `(beside, inline)` pair.
struct Pair;

/// The inline half of a `Blob`'s pair, read in one copy.
#[derive(serde::Deserialize)]
struct Inline(#[serde(with = "crate::codec::bytes")] Vec<u8>);

impl<'de> Visitor<'de> for Pair {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a blob")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        let beside: u64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let Inline(inline) = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        match (beside, inline.is_empty()) {
            (0, _) => Ok(Blob(inline)),
            (len, true) => take_beside(len).map(Blob),
            (len, false) => Err(de::Error::custom(format!(
                "a blob said to travel beside its value ({len} bytes) also has {} bytes inline",
                inline.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use std::cell::RefCell;

    thread_local! {
        static HANDED: RefCell<Vec<(u32, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    fn sink(bytes: &[u8], index: u32) {
        HANDED.with(|h| h.borrow_mut().push((index, bytes.to_vec())));
    }

    fn source(index: u32, len: usize) -> Option<Vec<u8>> {
        HANDED.with(|h| {
            h.borrow()
                .get(index as usize)
                .filter(|(_, bytes)| bytes.len() == len)
                .map(|(_, bytes)| bytes.clone())
        })
    }

    fn no_source(_: u32, _: usize) -> Option<Vec<u8>> {
        None
    }

    type Value = (String, Blob, u32, Blob, Blob);

    fn value() -> Value {
        (
            "x".into(),
            Blob::from(vec![1u8; BESIDE_MIN]),
            7,
            Blob::from(vec![2u8; 10]),
            Blob::from((0..BESIDE_MIN * 3).map(|i| i as u8).collect::<Vec<_>>()),
        )
    }

    #[test]
    fn large_blobs_go_beside_in_order_and_come_back() {
        HANDED.with(|h| h.borrow_mut().clear());
        let value = value();
        let encoded = sending(sink, || codec::encode(&value)).unwrap();
        let handed = HANDED.with(|h| h.borrow().clone());
        assert_eq!(
            handed
                .iter()
                .map(|(i, b)| (*i, b.len()))
                .collect::<Vec<_>>(),
            [(0, BESIDE_MIN), (1, BESIDE_MIN * 3)]
        );
        assert!(encoded.len() < 64, "{} bytes encoded", encoded.len());
        let back: Value = receiving(source, || codec::decode(&encoded)).unwrap();
        assert_eq!(back, value);
        // Without its blobs, the value does not decode, and says why.
        let err = receiving(no_source, || codec::decode::<Value>(&encoded)).unwrap_err();
        assert!(
            err.to_string()
                .contains("blob 0 of 65536 bytes did not come"),
            "{err}"
        );
        let err = codec::decode::<Value>(&encoded).unwrap_err();
        assert!(
            err.to_string().contains("not a call's arguments or result"),
            "{err}"
        );
    }

    #[test]
    fn a_measured_value_takes_the_room_it_will_take_and_hands_nothing_over() {
        HANDED.with(|h| h.borrow_mut().clear());
        let value = value();
        let (measured, encoded) = sending(sink, || {
            (
                codec::encoded_len(&value).unwrap(),
                codec::encode(&value).unwrap(),
            )
        });
        assert_eq!(measured, encoded.len());
        assert_eq!(HANDED.with(|h| h.borrow().len()), 2);
    }

    #[test]
    fn outside_the_scopes_a_blob_is_inline_and_json_is_its_bytes() {
        let value = value();
        let encoded = codec::encode(&value).unwrap();
        assert!(encoded.len() > BESIDE_MIN * 4);
        assert_eq!(codec::decode::<Value>(&encoded).unwrap(), value);
        // Inline, a blob is its bytes after a zero.
        assert_eq!(
            codec::encode(&Blob::from(vec![9u8, 8])).unwrap(),
            [0, 2, 9, 8]
        );
        let json = serde_json::to_string(&Blob::from(vec![1u8, 2])).unwrap();
        assert_eq!(json, "[1,2]");
        assert_eq!(
            serde_json::from_str::<Blob>(&json).unwrap(),
            Blob::from(vec![1u8, 2])
        );
    }

    #[test]
    fn a_blob_both_beside_and_inline_is_refused() {
        let forged = codec::encode(&(3u64, serde_bytes::Bytes::new(b"abc"))).unwrap();
        let err = receiving(source, || codec::decode::<Blob>(&forged)).unwrap_err();
        assert!(err.to_string().contains("also has 3 bytes inline"), "{err}");
    }
}
