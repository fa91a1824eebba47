//! The one bincode configuration of the project: values, arguments, manifest records and wire
//! messages are all encoded here. Nothing else calls bincode.
//!
//! Decoding is bounded: a length prefix larger than [`DECODE_LIMIT`] is refused before anything
//! of that size is allocated.

use serde::Serialize;
use serde::de::DeserializeOwned;

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

/// Decodes one `T` from the front of `bytes`; returns it and how many bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    bincode::serde::decode_from_slice(bytes, config()).map_err(|e| match e {
        bincode::error::DecodeError::LimitExceeded => CodecError::TooLong,
        other => CodecError::Decode(other.to_string()),
    })
}

/// Decodes a whole buffer into a `T`; bytes left over are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
}
