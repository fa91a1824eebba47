//! The host's side of blobs (`netrun_abi::blob`): what an instance handed over and what came
//! for it, and moving them with the values they belong to.
//!
//! Owns what an instance handed over while encoding (its [`Gather`]) and what came with the
//! value it is decoding (a payload with blobs and where they lie in it). Blobs handed over are
//! attached to the next call the guest makes or to the result of the export it runs
//! ([`crate::guest::host_api`], [`crate::guest::instance::run_export`]); the blobs of a call's
//! arguments or of a reply are kept until the guest has taken the last of them (or the next
//! call or reply replaces them). The imports through which the guest hands blobs over and
//! takes them (`blob_out`, `blob_in`, in `host_api`) copy each once: out of guest memory, into
//! a buffer of the guest's own.

use std::ops::Range;

use netrun_abi::blob::layout::{self, Gather, LayoutError, Split};
use netrun_abi::{CallError, CallReply, Outcome};

use crate::guest::exports::chunks_sharing_cpu;

/// An instance's blobs: handed over, and come in.
#[derive(Debug, Default)]
pub struct Blobs {
    out: Gather,
    came: Option<Came>,
}

/// A payload with blobs whose value the guest is decoding, and where its blobs lie.
#[derive(Debug)]
struct Came {
    payload: Vec<u8>,
    split: Split,
}

impl Blobs {
    /// The blobs handed over since the last value was sent, leaving none.
    pub fn take_out(&mut self) -> Gather {
        std::mem::take(&mut self.out)
    }

    /// Keeps a copy of `bytes`, blob `index` of the value being encoded (0 starts a new
    /// value), made sharing the CPU ([`chunks_sharing_cpu`]). Fails if blobs come out of
    /// order, or if the blobs of one value would exceed `limit` bytes.
    pub fn hand_over(&mut self, index: u32, bytes: &[u8], limit: usize) -> Result<(), String> {
        let before = if index == 0 { 0 } else { self.out.len() };
        if before.saturating_add(bytes.len()) > limit {
            return Err(format!(
                "the blobs of one value exceed the memory limit of {} MiB",
                limit / (1024 * 1024)
            ));
        }
        self.out
            .push_in(index, bytes.len(), chunks_sharing_cpu(bytes))
            .map_err(|e| e.to_string())
    }

    /// Where blob `index` of `len` bytes of the value being decoded lies, if it came.
    pub fn find(&self, index: u32, len: usize) -> Option<Range<usize>> {
        self.came.as_ref()?.split.blob(index, len)
    }

    /// The bytes at `range` of the payload that came ([`Blobs::find`] found it).
    pub fn came_bytes(&self, range: Range<usize>) -> &[u8] {
        let came = self.came.as_ref().expect("a blob was found in it");
        &came.payload[range]
    }

    /// The guest has taken blob `index`: the payload is let go after its last.
    pub fn taken(&mut self, index: u32) {
        if self
            .came
            .as_ref()
            .is_some_and(|came| index as usize + 1 == came.split.count())
        {
            self.came = None;
        }
    }

    /// Forgets the blobs handed over (a new export starts).
    pub fn clear_out(&mut self) {
        self.out.clear();
    }

    /// Keeps `payload`, a payload with blobs, for the guest to take its blobs from, in place of
    /// those of the last value; returns its body. Fails if the payload is not laid out as one
    /// (and then keeps nothing).
    pub fn came(&mut self, payload: Vec<u8>) -> Result<&[u8], LayoutError> {
        self.came = None;
        let split = layout::split(&payload)?;
        let came = self.came.insert(Came { payload, split });
        Ok(&came.payload[came.split.body.clone()])
    }

    /// Forgets the blobs that came with the last value (the guest has decoded it).
    pub fn forget_came(&mut self) {
        self.came = None;
    }

    /// Readies `reply` for the guest: the blobs of a value with blobs are kept for it to take,
    /// and its value becomes the body alone (a payload not laid out as one is a codec error).
    pub fn deliver(&mut self, reply: &mut CallReply) {
        let Outcome::ValueWithBlobs(payload) = &mut reply.outcome else {
            self.forget_came();
            return;
        };
        let payload = std::mem::take(payload);
        reply.outcome = match self.came(payload) {
            Ok(body) => Outcome::Value(body.to_vec()),
            Err(e) => unreadable("the reply's value", e),
        };
    }
}

/// `outcome` with the blobs `out` its value handed over: a value with blobs when there are
/// some.
pub fn with_out(outcome: Outcome, out: Gather) -> Outcome {
    match outcome {
        Outcome::Value(body) if !out.is_empty() => Outcome::ValueWithBlobs(out.finish(&body)),
        outcome => outcome,
    }
}

/// The outcome of a payload with blobs that is not laid out as one.
pub fn unreadable(what: &str, e: LayoutError) -> Outcome {
    Outcome::Error(CallError::Codec {
        message: format!("{what}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_carries_the_blobs_handed_over_and_only_a_value_does() {
        let gathered = || {
            let mut out = Gather::default();
            out.push(0, &[4; 10]).unwrap();
            out
        };
        let Outcome::ValueWithBlobs(payload) = with_out(Outcome::Value(b"v".to_vec()), gathered())
        else {
            panic!("a value with blobs handed over carries them");
        };
        let mut blobs = Blobs::default();
        assert_eq!(blobs.came(payload).unwrap(), b"v");
        let came = blobs.came.as_ref().unwrap();
        assert_eq!(&came.payload[came.split.blob(0, 10).unwrap()], &[4; 10]);
        blobs.forget_came();
        assert!(blobs.came.is_none());
        // No blobs: the value as it was; a flag or an error never carries blobs.
        let plain = with_out(Outcome::Value(b"v".to_vec()), Gather::default());
        assert_eq!(plain, Outcome::Value(b"v".to_vec()));
        let flag = with_out(Outcome::Flag("NULL".into()), gathered());
        assert_eq!(flag, Outcome::Flag("NULL".into()));
        // A payload not laid out as one is refused, and nothing is kept.
        assert!(blobs.came(vec![1, 2, 3]).is_err());
        assert!(blobs.came.is_none());
    }
}
