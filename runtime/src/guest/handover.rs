//! What crosses an instance's boundary without the host entering the guest to allocate or to
//! free a buffer (guest ABI 5): the bytes the host holds for the guest to take with
//! `net.input` (an export's arguments, a small result of an import, returned as
//! `pack(HELD, len)`), and the outcome an export hands over with `net.output`.
//!
//! Entering the guest costs a fiber switch each way; a call used to make three such entries on
//! the callee (`netrun_alloc` for the arguments, the export, `netrun_free` for its outcome) and
//! one on the caller besides the import's return (`netrun_alloc` for the reply). The guest now makes
//! plain calls of two synchronous imports instead, from the entry it is in. Large results of
//! imports still go through `netrun_alloc` ([`HOLD_AT_MOST`]), so that their bytes are written
//! into guest memory once.
//!
//! Each hold is taken at once: an export takes its arguments first, a guest takes an import's
//! result before it does anything else, so one slot serves nested calls too.

use netrun_abi::Outcome;

/// The largest result of an import held for the guest to take: a copy of this many bytes costs
/// about what an entry into the guest does. A larger one is encoded straight into a buffer from
/// `netrun_alloc`, once.
pub const HOLD_AT_MOST: usize = 4 * 1024;

/// The bytes held for the guest, and the outcome its export handed over.
#[derive(Debug, Default)]
pub struct Handover {
    held: Option<Vec<u8>>,
    outcome: Option<Outcome>,
}

/// A guest that did not follow the hand-over's order (a module not built with the SDK, or a
/// bug in it): the call traps with this.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoverError {
    #[error("the guest asked for {asked} bytes, but the host holds nothing for it")]
    NothingHeld { asked: usize },
    #[error("the guest asked for {asked} bytes, but the host holds {held}")]
    WrongLength { asked: usize, held: usize },
    #[error("{len} bytes do not fit the guest's 32-bit memory")]
    TooLarge { len: usize },
    #[error("the export handed over a second outcome")]
    SecondOutcome,
}

impl Handover {
    /// Holds `bytes` for the guest to take next (replacing any it did not take, which it can
    /// no longer ask for); returns their length as the ABI passes it.
    pub fn hold(&mut self, bytes: Vec<u8>) -> Result<u32, HandoverError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|&len| len != u32::MAX)
            .ok_or(HandoverError::TooLarge { len: bytes.len() })?;
        self.held = Some(bytes);
        Ok(len)
    }

    /// What the host holds, `asked` bytes, for the guest to copy; it is let go.
    pub fn take_held(&mut self, asked: usize) -> Result<Vec<u8>, HandoverError> {
        match self.held.take() {
            Some(held) if held.len() == asked => Ok(held),
            Some(held) => Err(HandoverError::WrongLength {
                asked,
                held: held.len(),
            }),
            None => Err(HandoverError::NothingHeld { asked }),
        }
    }

    /// Keeps the outcome the running export handed over.
    pub fn put_outcome(&mut self, outcome: Outcome) -> Result<(), HandoverError> {
        match self.outcome {
            Some(_) => Err(HandoverError::SecondOutcome),
            None => {
                self.outcome = Some(outcome);
                Ok(())
            }
        }
    }

    /// The outcome the export that just returned handed over, if it did; clears what it left
    /// held.
    pub fn take_outcome(&mut self) -> Option<Outcome> {
        self.held = None;
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_are_taken_once_at_their_length() {
        let mut handover = Handover::default();
        assert_eq!(handover.hold(vec![1, 2, 3]), Ok(3));
        assert_eq!(
            handover.take_held(2),
            Err(HandoverError::WrongLength { asked: 2, held: 3 })
        );
        // A wrong ask lets the bytes go: the guest is broken, and the call traps.
        assert_eq!(
            handover.take_held(3),
            Err(HandoverError::NothingHeld { asked: 3 })
        );
        handover.hold(vec![4, 5]).unwrap();
        assert_eq!(handover.take_held(2), Ok(vec![4, 5]));
        assert_eq!(
            handover.take_held(2),
            Err(HandoverError::NothingHeld { asked: 2 })
        );
    }

    #[test]
    fn an_export_hands_one_outcome_over() {
        let mut handover = Handover::default();
        assert_eq!(handover.take_outcome(), None);
        handover.put_outcome(Outcome::Value(vec![7])).unwrap();
        assert_eq!(
            handover.put_outcome(Outcome::Value(vec![8])),
            Err(HandoverError::SecondOutcome)
        );
        assert_eq!(handover.take_outcome(), Some(Outcome::Value(vec![7])));
        assert_eq!(handover.take_outcome(), None);
    }

    #[test]
    fn what_an_export_left_held_goes_with_its_end() {
        let mut handover = Handover::default();
        handover.hold(vec![1]).unwrap();
        handover.put_outcome(Outcome::Value(vec![])).unwrap();
        handover.take_outcome();
        assert_eq!(
            handover.take_held(1),
            Err(HandoverError::NothingHeld { asked: 1 })
        );
    }
}
