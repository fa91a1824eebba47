//! The wire messages peers exchange, and their encoding into frames.
//!
//! A connection starts with a [`Hello`] each way (the caller's first), then the caller sends
//! [`Message::Call`]s and the server answers each with a [`Message::Reply`] carrying the same
//! request id, in any order: many calls are in flight on one connection. Encoding goes through
//! the one codec of the ABI crate; this module owns the message types and nothing else.

use netrun_abi::{Contract, Outcome, codec};
use serde::{Deserialize, Serialize};

use crate::wire::frame::{self, FrameError};

/// Version of this runtime, sent in every handshake and shown by `info`.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of this wire protocol; peers speaking another version refuse each other.
pub const PROTOCOL_VERSION: u32 = 6;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    /// `None` for a client that is not a peer (the CLI, a discovery probe).
    pub peer_id: Option<String>,
    pub group: String,
    pub hub: bool,
    /// SHA-256 of the module, hex; empty for a client that runs no module.
    pub module_hash: String,
    pub runtime_version: String,
    /// The largest frame this side accepts: the other side sends nothing larger (it refuses
    /// such a call or reply itself, with `FrameTooLarge`).
    pub max_frame: u64,
}

/// How a call's arguments and result are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Bincode of the parameter tuple; bincode result. What guests use.
    Bincode,
    /// A JSON array of the arguments; JSON result. What the CLI uses.
    Json,
}

/// What a call's name refers to on the receiving peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    /// A connected function (by registered name) or a built-in.
    Function,
    /// The delivery of an event to a subscription handler (by the handler's name).
    Event,
}

/// Names the chain of calls a call belongs to: a call made while running a call of chain C
/// is part of C. A peer whose instance waits on an outgoing call of C runs the calls of C
/// that arrive in that instance (the guest layer's re-entrancy).
pub type ChainId = u64;

/// A call of a function on the receiving peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: u64,
    /// The chain the call belongs to; `None` from a client that is not a peer.
    pub chain: Option<ChainId>,
    pub kind: CallKind,
    pub function: String,
    pub encoding: Encoding,
    #[serde(with = "netrun_abi::codec::bytes")]
    pub args: Vec<u8>,
    pub contract: Option<Contract>,
    /// The time the caller gives the call, in milliseconds from its arrival: the receiver
    /// refuses it at 0, drops it if it is still queued when the time runs out, and stops the
    /// guest running it then. `None`: only the receiver's own limits apply.
    pub time_left_ms: Option<u64>,
}

/// The answer to the [`Call`] with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub outcome: Outcome,
}

/// Everything that travels in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    /// The handshake failed; the reason is for people. The connection closes after it.
    Refused(String),
    Call(Call),
    Reply(Reply),
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("malformed message: {0}")]
    Codec(#[from] codec::CodecError),
}

impl Hello {
    /// The hello of something that is not a peer (CLI, probe) accepting frames up to
    /// `max_frame` bytes.
    pub fn client(max_frame: usize) -> Self {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            peer_id: None,
            group: String::new(),
            hub: false,
            module_hash: String::new(),
            runtime_version: RUNTIME_VERSION.to_string(),
            max_frame: max_frame as u64,
        }
    }

    /// The largest frame to send to the side that said this hello, whose own limit is `ours`.
    pub fn send_limit(&self, ours: usize) -> usize {
        ours.min(usize::try_from(self.max_frame).unwrap_or(usize::MAX))
    }

    /// Checks that the other side speaks our protocol.
    pub fn check_compatible(&self) -> Result<(), String> {
        if self.protocol_version == PROTOCOL_VERSION {
            return Ok(());
        }
        Err(format!(
            "protocol version mismatch: the other side speaks netrun protocol {} (runtime {}), this side speaks {} (runtime {})",
            self.protocol_version, self.runtime_version, PROTOCOL_VERSION, RUNTIME_VERSION
        ))
    }
}

impl Message {
    /// Appends this message as one frame to `out`.
    pub fn encode_frame(&self, out: &mut Vec<u8>, max_frame: usize) -> Result<(), MessageError> {
        let start = frame::begin_frame(out);
        if let Err(e) = codec::encode_into(self, out) {
            out.truncate(start);
            return Err(e.into());
        }
        frame::finish_frame(out, start, max_frame)?;
        Ok(())
    }

    /// This message as one frame.
    pub fn to_frame(&self, max_frame: usize) -> Result<Vec<u8>, MessageError> {
        let mut out = Vec::new();
        self.encode_frame(&mut out, max_frame)?;
        Ok(out)
    }

    /// Decodes a frame's payload.
    pub fn decode(payload: &[u8]) -> Result<Message, MessageError> {
        Ok(codec::decode_untrusted(payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_survives_the_frame() {
        let call = Message::Call(Call {
            id: 7,
            chain: Some(u64::MAX),
            kind: CallKind::Event,
            function: "echo".into(),
            encoding: Encoding::Bincode,
            args: vec![9; 1000],
            contract: Some(Contract {
                fingerprint: 1,
                signature: "(String) -> String".into(),
            }),
            time_left_ms: Some(950),
        });
        let frame = call.to_frame(frame::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(Message::decode(&frame[frame::HEADER_LEN..]).unwrap(), call);
    }

    #[test]
    fn an_oversized_message_is_refused_and_leaves_the_buffer_as_it_was() {
        let reply = Message::Reply(Reply {
            id: 1,
            outcome: Outcome::Value(vec![0; 100]),
        });
        let mut out = vec![1, 2, 3];
        assert!(matches!(
            reply.encode_frame(&mut out, 50),
            Err(MessageError::Frame(FrameError::TooLarge { max: 50, .. }))
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn version_mismatch_is_explained() {
        let mut hello = Hello::client(1024);
        hello.protocol_version = 99;
        let reason = hello.check_compatible().unwrap_err();
        assert!(
            reason.contains("protocol 99") && reason.contains("mismatch"),
            "{reason}"
        );
    }
}
