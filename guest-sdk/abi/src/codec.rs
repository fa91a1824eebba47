//! The one bincode configuration of the project: values, arguments, manifest records and wire
//! messages are all encoded here. Nothing else calls bincode.
//!
//! Decoding is bounded: a length prefix larger than [`DECODE_LIMIT`] is refused before anything
//! of that size is allocated. Bytes from another party (a frame off the network) go through
//! [`decode_untrusted`], which also refuses a length its input could not hold, so a frame of a
//! few bytes cannot make the reader reserve a gigabyte.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod borrowing;

use borrowing::BorrowingSeed;

/// Upper bound on what one decode may claim, in bytes.
pub const DECODE_LIMIT: usize = 1 << 30;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode value: {0}")]
    Encode(String),
    #[error("cannot decode value: {0}")]
    Decode(String),
    #[error("cannot decode value: {0} trailing bytes after it")]
    Trailing(usize),
    #[error("cannot decode value: it claims more than the decode limit of {DECODE_LIMIT} bytes")]
    TooLong,
    #[error("cannot decode value: it claims more than its {input} bytes of input could hold")]
    Forged { input: usize },
}

/// Encodes `value` into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Appends the encoding of `value` to `out` (no intermediate buffer).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// How many bytes the encoding of `value` takes, found without writing it.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    // A blob that will go beside the value takes no room in it, and is not handed over yet.
    crate::blob::measuring(|| bincode::serde::encode_into_writer(value, &mut size, config()))
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(size.bytes_written)
}

/// Encodes `value` into the front of `out`; returns how many bytes it wrote. Fails if `out` is
/// too short (size it with [`encoded_len`]).
pub fn encode_into_slice<T: Serialize + ?Sized>(
    value: &T,
    out: &mut [u8],
) -> Result<usize, CodecError> {
    bincode::serde::encode_into_slice(value, out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Appends the encoding of `value` as a byte string holding it (what a payload field, such as
/// `Outcome::Value(encode(value))`, holds), in one pass over `value`: its length is found
/// first, so the encoding goes straight after the byte string's length prefix instead of
/// into a buffer of its own that is then copied.
pub fn encode_nested<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let len = encoded_len(value)?;
    let mut prefix = [0u8; 9];
    let prefix_len = encode_into_slice(&(len as u64), &mut prefix)?;
    out.reserve_exact(prefix_len + len);
    out.extend_from_slice(&prefix[..prefix_len]);
    let start = out.len();
    encode_into(value, out)?;
    if out.len() - start != len {
        return Err(CodecError::Encode(format!(
            "a value sized at {len} bytes encoded to {}",
            out.len() - start
        )));
    }
    Ok(())
}

/// Decodes a whole buffer into a `T` that may borrow from it (a `&[u8]` payload field is read
/// where it lies, not copied); bytes left over are an error.
pub fn decode_borrowed<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    let (value, used) = read(bytes, config()).map_err(limited)?;
    whole(value, used, bytes.len())
}

/// Decodes one `T` from the front of `bytes`; returns it and how many bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    read(bytes, config()).map_err(limited)
}

/// Decodes a whole buffer into a `T`; bytes left over are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_borrowed(bytes)
}

/// How much more memory than input bytes a well-formed value may claim while it decodes: a byte
/// string claims what it holds, a container of small values a few times its encoding.
const CLAIM_PER_INPUT_BYTE: usize = 32;

/// Decodes a whole buffer from another party into a `T`, like [`decode`], but with the claim
/// limit scaled to the input (see [`decode_prefix_untrusted`]).
pub fn decode_untrusted<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_prefix_untrusted(bytes)?;
    whole(value, used, bytes.len())
}

/// Decodes one `T` from the front of bytes from another party, like [`decode_prefix`], but a
/// length prefix claiming more than [`CLAIM_PER_INPUT_BYTE`] times the input is refused before
/// anything of that size is allocated (bincode reserves a byte string's whole claimed length
/// before reading it).
pub fn decode_prefix_untrusted<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, usize), CodecError> {
    /// Decodes with the limit `N`; a limit hit is `Forged` (the input could not hold it).
    fn bounded<T: DeserializeOwned, const N: usize>(
        bytes: &[u8],
    ) -> Result<(T, usize), CodecError> {
        let config = bincode::config::standard().with_limit::<N>();
        read(bytes, config).map_err(|e| match e {
            bincode::error::DecodeError::LimitExceeded => CodecError::Forged { input: bytes.len() },
            other => CodecError::Decode(other.to_string()),
        })
    }
    let claim = bytes.len().saturating_mul(CLAIM_PER_INPUT_BYTE);
    if claim <= 0x1_0000 {
        bounded::<T, 0x1_0000>(bytes)
    } else if claim <= 0x10_0000 {
        bounded::<T, 0x10_0000>(bytes)
    } else if claim <= 0x100_0000 {
        bounded::<T, 0x100_0000>(bytes)
    } else if claim <= 0x1000_0000 {
        bounded::<T, 0x1000_0000>(bytes)
    } else {
        decode_prefix(bytes)
    }
}

/// A `Vec<u8>` field written as a byte string (as `serde_bytes` writes it) and read back in one
/// copy from the input: bincode's own `Vec<u8>` decoding zero-fills a buffer of the claimed
/// length before copying into it, a second pass over every byte of a payload. Used as
/// `#[serde(with = "netrun_abi::codec::bytes")]` on every payload field.
pub mod bytes {
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serde_bytes::serialize(bytes, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_bytes(Copied)
    }

    /// Takes a byte string as it is offered: borrowed from the input (bincode), owned, or as a
    /// sequence of numbers (formats without byte strings, such as JSON).
    struct Copied;

    impl<'de> Visitor<'de> for Copied {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }
}

/// Decodes one `T` from the front of `bytes` with `config`, byte strings and strings read as
/// borrowed input (see [`borrowing`]: one copy of each, not a zero-filled buffer and a copy).
fn read<'a, T: Deserialize<'a>, C: bincode::config::Config>(
    bytes: &'a [u8],
    config: C,
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::seed_decode_from_slice(BorrowingSeed::<T>(PhantomData), bytes, config)
}

/// A decoding error under [`DECODE_LIMIT`]: the limit hit is `TooLong`.
fn limited(e: bincode::error::DecodeError) -> CodecError {
    match e {
        bincode::error::DecodeError::LimitExceeded => CodecError::TooLong,
        other => CodecError::Decode(other.to_string()),
    }
}

/// `value` if decoding used all `len` bytes.
fn whole<T>(value: T, used: usize, len: usize) -> Result<T, CodecError> {
    if used != len {
        return Err(CodecError::Trailing(len - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Payload(#[serde(with = "super::bytes")] Vec<u8>);

    #[test]
    fn a_payload_field_reads_back_what_serde_bytes_writes() {
        for len in [0, 1, 127, 128, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let written = encode(&serde_bytes::ByteBuf::from(bytes.clone())).unwrap();
            assert_eq!(encode(&Payload(bytes.clone())).unwrap(), written);
            assert_eq!(decode::<Payload>(&written).unwrap(), Payload(bytes.clone()));
            assert_eq!(
                decode_untrusted::<Payload>(&written).unwrap(),
                Payload(bytes)
            );
        }
        // A byte string claiming more than its input holds is refused, not reserved.
        let mut forged = encode(&Payload(vec![1; 300])).unwrap();
        forged.truncate(100);
        assert!(decode_untrusted::<Payload>(&forged).is_err());
    }

    #[test]
    fn a_nested_encoding_is_the_byte_string_of_the_encoding() {
        // Lengths on each side of the varint's size classes (1, 3 and 5 bytes of prefix).
        for len in [0usize, 249, 250, 251, 65_535, 65_536, 70_000] {
            let value = ("x".to_string(), serde_bytes::ByteBuf::from(vec![3u8; len]));
            let mut nested = vec![9];
            encode_nested(&value, &mut nested).unwrap();
            let mut two_passes = vec![9];
            encode_into(&Payload(encode(&value).unwrap()), &mut two_passes).unwrap();
            assert_eq!(nested, two_passes, "length {len}");
            assert_eq!(encoded_len(&value).unwrap(), encode(&value).unwrap().len());
        }
    }

    #[test]
    fn a_borrowed_decode_reads_a_payload_where_it_lies() {
        let written = encode(&Payload(vec![5; 300])).unwrap();
        let read: &[u8] = decode_borrowed::<&serde_bytes::Bytes>(&written).unwrap();
        assert_eq!(read, &[5; 300][..]);
        assert!(std::ptr::eq(
            read.as_ptr(),
            written[written.len() - 300..].as_ptr()
        ));
        let mut longer = written.clone();
        longer.push(0);
        assert!(matches!(
            decode_borrowed::<&serde_bytes::Bytes>(&longer),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn round_trips_nested_values() {
        let mut map = BTreeMap::new();
        map.insert("1".to_string(), BTreeMap::from([("2".to_string(), 3i64)]));
        let bytes = encode(&(map.clone(), "x".to_string(), 1.5f64)).unwrap();
        let back: (BTreeMap<String, BTreeMap<String, i64>>, String, f64) = decode(&bytes).unwrap();
        assert_eq!(back, (map, "x".to_string(), 1.5));
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut bytes = encode(&7u32).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn refuses_a_length_beyond_the_limit_without_allocating_it() {
        // A well-formed length one past the limit (0xFD: a u64 follows), then a few bytes: the
        // length is read, and refused before a buffer of that size is made.
        let mut bytes = vec![0xFDu8];
        bytes.extend_from_slice(&(DECODE_LIMIT as u64 + 1).to_le_bytes());
        bytes.extend_from_slice(b"abc");
        let err = decode::<serde_bytes::ByteBuf>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::TooLong), "{err:?}");
        assert!(err.to_string().contains(&DECODE_LIMIT.to_string()), "{err}");
        // The same marker with a length within the limit is read as a length.
        let mut short = vec![0xFDu8];
        short.extend_from_slice(&3u64.to_le_bytes());
        short.extend_from_slice(b"abc");
        let ok = decode::<serde_bytes::ByteBuf>(&short).unwrap();
        assert_eq!(ok.as_slice(), b"abc");
    }

    /// A length prefix for `claimed` bytes, then `body`.
    fn forged(claimed: u64, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0xFDu8];
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    #[test]
    fn untrusted_input_cannot_claim_more_than_it_could_hold() {
        // 12 bytes claiming 60 MiB: within the decode limit, so `decode` would reserve it;
        // `decode_untrusted` refuses it from the claim alone.
        let bytes = forged(60 << 20, b"abc");
        let err = decode_untrusted::<serde_bytes::ByteBuf>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::Forged { input: 12 }), "{err:?}");
        assert!(err.to_string().contains("12 bytes of input"), "{err}");
        // An honest claim decodes, the same at every size class.
        for len in [3usize, 5_000, 100_000, 3 << 20] {
            let body = vec![7u8; len];
            let back = decode_untrusted::<serde_bytes::ByteBuf>(&forged(len as u64, &body));
            assert_eq!(back.unwrap().into_vec(), body, "length {len}");
        }
        // A container of small values claims more memory than its encoding, and still decodes.
        let strings = vec![String::new(); 10_000];
        let back: Vec<String> = decode_untrusted(&encode(&strings).unwrap()).unwrap();
        assert_eq!(back, strings);
    }
}
