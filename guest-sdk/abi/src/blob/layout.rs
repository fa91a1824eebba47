//! How a payload (a call's arguments, a result) carries the blobs that travelled beside its
//! value: the blobs' bytes one after the other, then the value's encoding (its body), then
//! each blob's length (`u64`, little-endian), their number (`u32`) and the body's length
//! (`u64`). The host builds it as the guest hands blobs over ([`Gather`]), the blobs first so
//! that the large part is written once, where it stays; the receiving host finds the body and
//! each blob in it ([`split`]) from its end. The wire carries it as any other payload.

use std::ops::Range;

/// Bytes after the lengths of the blobs: their number and the body's length.
const TAIL: usize = 4 + 8;

/// Why a payload is not a payload with blobs.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a payload with blobs of {0} bytes is too short for its lengths")]
    Short(usize),
    #[error("a payload with blobs of {len} bytes says it holds {said}")]
    Lengths { len: usize, said: u128 },
    #[error("blob {index} handed over out of order: {expected} came before it")]
    OutOfOrder { index: u32, expected: usize },
}

/// The blobs of one value as they are handed over, then the payload that carries them.
#[derive(Debug, Default)]
pub struct Gather {
    bytes: Vec<u8>,
    lens: Vec<u64>,
}

/// Room kept after the blobs for the body and the lengths, so that adding them does not move
/// the blobs (a body beside large blobs is small).
const ROOM_AFTER: usize = 4096;

impl Gather {
    /// No blob handed over.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bytes of the blobs handed over.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets the blobs handed over.
    pub fn clear(&mut self) {
        *self = Gather::default();
    }

    /// Adds blob number `index` of a value; blob 0 starts a new value (the blobs of one that
    /// was not sent are forgotten). Blobs come in order.
    pub fn push(&mut self, index: u32, blob: &[u8]) -> Result<(), LayoutError> {
        self.push_in(index, blob.len(), [blob])
    }

    /// [`Gather::push`] of a blob of about `len` bytes (room is made for that many) handed
    /// over as `chunks`, which make the blob one after the other.
    pub fn push_in<'a>(
        &mut self,
        index: u32,
        len: usize,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), LayoutError> {
        if index == 0 {
            self.clear();
        }
        if index as usize != self.lens.len() {
            return Err(LayoutError::OutOfOrder {
                index,
                expected: self.lens.len(),
            });
        }
        self.bytes.reserve(len + ROOM_AFTER);
        let start = self.bytes.len();
        for chunk in chunks {
            self.bytes.extend_from_slice(chunk);
        }
        self.lens.push((self.bytes.len() - start) as u64);
        Ok(())
    }

    /// The payload of the value encoded as `body` with the blobs handed over.
    pub fn finish(self, body: &[u8]) -> Vec<u8> {
        let Gather { mut bytes, lens } = self;
        bytes.reserve(body.len() + lens.len() * 8 + TAIL);
        bytes.extend_from_slice(body);
        for len in &lens {
            bytes.extend_from_slice(&len.to_le_bytes());
        }
        bytes.extend_from_slice(&(lens.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes
    }
}

/// Where the body and each blob lie in a payload with blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub body: Range<usize>,
    blobs: Vec<Range<usize>>,
}

impl Split {
    /// Where blob `index` lies, if the payload has it and it is `len` bytes long.
    pub fn blob(&self, index: u32, len: usize) -> Option<Range<usize>> {
        self.blobs
            .get(index as usize)
            .filter(|range| range.len() == len)
            .cloned()
    }

    /// How many blobs the payload carries.
    pub fn count(&self) -> usize {
        self.blobs.len()
    }
}

/// Finds the body and the blobs of `payload`, checking that its lengths add up to it (it may
/// come from another party).
pub fn split(payload: &[u8]) -> Result<Split, LayoutError> {
    let len = payload.len();
    let short = || LayoutError::Short(len);
    let tail_at = len.checked_sub(TAIL).ok_or_else(short)?;
    let count = u32::from_le_bytes(payload[tail_at..tail_at + 4].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(payload[tail_at + 4..].try_into().expect("8 bytes"));
    let lens_at = (count as usize)
        .checked_mul(8)
        .and_then(|lens| tail_at.checked_sub(lens))
        .ok_or_else(short)?;
    let mut blobs = Vec::with_capacity(count as usize);
    let mut said = u128::from(body_len);
    let mut at = 0usize;
    for bytes in payload[lens_at..tail_at].chunks_exact(8) {
        let blob = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        said += u128::from(blob);
        if said > lens_at as u128 {
            break;
        }
        blobs.push(at..at + blob as usize);
        at += blob as usize;
    }
    if said != lens_at as u128 {
        return Err(LayoutError::Lengths { len, said });
    }
    Ok(Split {
        body: at..lens_at,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_body_come_back_where_they_were_put() {
        let mut gather = Gather::default();
        gather.push(0, &[1; 5]).unwrap();
        gather.push(1, &[]).unwrap();
        gather.push_in(2, 70, [&[3; 30][..], &[3; 40]]).unwrap();
        assert_eq!(gather.len(), 75);
        let payload = gather.finish(b"body");
        let split = split(&payload).unwrap();
        assert_eq!(&payload[split.body.clone()], b"body");
        assert_eq!(split.count(), 3);
        assert_eq!(&payload[split.blob(0, 5).unwrap()], &[1; 5]);
        assert_eq!(split.blob(1, 0), Some(5..5));
        assert_eq!(&payload[split.blob(2, 70).unwrap()], &[3; 70][..]);
        // Another length than the blob's, or a blob it does not have: none.
        assert_eq!(split.blob(2, 69), None);
        assert_eq!(split.blob(3, 0), None);
    }

    #[test]
    fn blob_zero_starts_a_new_value_and_blobs_come_in_order() {
        let mut gather = Gather::default();
        gather.push(0, &[1; 5]).unwrap();
        gather.push(0, &[2; 3]).unwrap();
        assert_eq!(gather.len(), 3);
        assert_eq!(
            gather.push(2, &[0]),
            Err(LayoutError::OutOfOrder {
                index: 2,
                expected: 1
            })
        );
        let payload = gather.finish(&[]);
        let split = split(&payload).unwrap();
        assert_eq!(split.body, 3..3);
        assert_eq!(&payload[split.blob(0, 3).unwrap()], &[2; 3]);
    }

    #[test]
    fn lengths_that_do_not_add_up_are_refused() {
        let good = {
            let mut gather = Gather::default();
            gather.push(0, &[1; 10]).unwrap();
            gather.finish(b"xy")
        };
        assert!(split(&good).is_ok());
        assert_eq!(split(&good[..11]), Err(LayoutError::Short(11)));
        let mut longer = good.clone();
        longer.insert(0, 0);
        assert!(matches!(split(&longer), Err(LayoutError::Lengths { .. })));
        // A count of blobs the payload could not hold, and lengths that overflow.
        let mut many = good.clone();
        let at = many.len() - TAIL;
        many[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(split(&many), Err(LayoutError::Short(many.len())));
        let mut huge = good.clone();
        let at = huge.len() - TAIL - 8;
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(split(&huge), Err(LayoutError::Lengths { .. })));
    }
}
