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
pub const PROTOCOL_VERSION: u32 = 8;

/// Room made for a frame's head (its length, the message without its payload, the payload's
/// length) before encoding it: a call's (with its function's name and contract) or a reply's
/// fits, so the head is allocated once instead of growing from empty four or five times.
const HEAD_CAPACITY: usize = 128;

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
    /// Bincode of the parameter tuple whose blobs travel beside it, the arguments laid out as
    /// `netrun_abi::blob::layout` says; bincode result. What guests use when the arguments
    /// hold large `Blob`s.
    BincodeWithBlobs,
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
    #[error("malformed message: its payload was said to be {said} bytes, and {found} came")]
    PayloadLength { said: usize, found: usize },
    #[error("malformed message: {0} bytes of payload after a message that has none")]
    NoPayload(usize),
    #[error("malformed message: {0} bytes of payload inside the message instead of after it")]
    PayloadInside(usize),
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

/// A message framed for the wire: the frame's header and the message in `head`, then its
/// payload in `body`, the buffer the message held, moved rather than copied (see
/// [`Message::into_framed`]).
#[derive(Debug)]
pub struct Framed {
    pub head: Vec<u8>,
    pub body: Vec<u8>,
}

impl Framed {
    /// Bytes of the whole frame, header included.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// The whole frame in one buffer.
    pub fn into_vec(self) -> Vec<u8> {
        let Framed { mut head, body } = self;
        head.extend_from_slice(&body);
        head
    }
}

/// Where a frame's payload starts once its message is read (see [`Message::decode_head`]).
#[derive(Debug)]
pub struct Head {
    /// The message, its payload field still empty.
    pub message: Message,
    /// The payload's length.
    pub payload_len: usize,
    /// Where the payload's bytes start in the frame.
    pub payload_at: usize,
}

impl Head {
    /// The message with `payload`, the bytes that came after it, which must be as many as
    /// the head said (none for a message without a payload).
    pub fn finish(self, payload: Vec<u8>) -> Result<Message, MessageError> {
        let Head {
            mut message,
            payload_len,
            ..
        } = self;
        if payload.len() != payload_len {
            return Err(match message.has_payload() {
                true => MessageError::PayloadLength {
                    said: payload_len,
                    found: payload.len(),
                },
                false => MessageError::NoPayload(payload.len()),
            });
        }
        message.put_payload(payload);
        Ok(message)
    }
}

impl Message {
    /// This message as a frame, with the payload moved in (not copied). The frame of a message
    /// with a payload (a call's arguments, a reply's value) is the message with that field left
    /// empty, then the payload's length, then its bytes: the payload travels in the buffer it
    /// came in, and a reader can put a large one straight into a buffer of its own (see
    /// [`Message::decode_head`]). Other messages (the handshake's) are their encoding alone, so
    /// a peer of another protocol version still reads a hello and says what is wrong.
    pub fn into_framed(mut self, max_frame: usize) -> Result<Framed, MessageError> {
        let body = self.take_payload();
        let mut head = Vec::with_capacity(HEAD_CAPACITY);
        let start = frame::begin_frame(&mut head);
        codec::encode_into(&self, &mut head)?;
        let body = match body {
            Some(body) => {
                codec::encode_into(&(body.len() as u64), &mut head)?;
                body
            }
            None => Vec::new(),
        };
        frame::finish_frame(&mut head, start, body.len(), max_frame)?;
        Ok(Framed { head, body })
    }

    /// Appends this message as one frame to `out`; `out` is left as it was on an error.
    pub fn encode_frame(&self, out: &mut Vec<u8>, max_frame: usize) -> Result<(), MessageError> {
        out.extend_from_slice(&self.to_frame(max_frame)?);
        Ok(())
    }

    /// This message as one frame, in one buffer (the payload copied).
    pub fn to_frame(&self, max_frame: usize) -> Result<Vec<u8>, MessageError> {
        Ok(self.clone().into_framed(max_frame)?.into_vec())
    }

    /// Decodes a frame's payload: the message, then its payload.
    pub fn decode(payload: &[u8]) -> Result<Message, MessageError> {
        let head = Message::decode_head(payload)?;
        let bytes = payload[head.payload_at..].to_vec();
        head.finish(bytes)
    }

    /// Decodes the start of a frame's payload: the message and, for one with a payload, the
    /// payload's length, which `bytes` must hold (the payload's own bytes need not be there
    /// yet).
    pub fn decode_head(bytes: &[u8]) -> Result<Head, MessageError> {
        let (mut message, used) = codec::decode_prefix_untrusted::<Message>(bytes)?;
        match message.take_payload() {
            None => {
                return Ok(Head {
                    message,
                    payload_len: 0,
                    payload_at: used,
                });
            }
            // The payload goes after the message, never in it: one frame per message.
            Some(inside) if !inside.is_empty() => {
                return Err(MessageError::PayloadInside(inside.len()));
            }
            Some(_) => {}
        }
        let (payload_len, len_used) = codec::decode_prefix_untrusted::<u64>(&bytes[used..])?;
        Ok(Head {
            message,
            payload_len: usize::try_from(payload_len).unwrap_or(usize::MAX),
            payload_at: used + len_used,
        })
    }

    /// True for a message with a payload field: a call, a reply with a value.
    fn has_payload(&self) -> bool {
        matches!(
            self,
            Message::Call(_)
                | Message::Reply(Reply {
                    outcome: Outcome::Value(_) | Outcome::ValueWithBlobs(_),
                    ..
                })
        )
    }

    /// Takes the payload out, leaving its field empty; `None` for a message without one.
    fn take_payload(&mut self) -> Option<Vec<u8>> {
        match self {
            Message::Call(call) => Some(std::mem::take(&mut call.args)),
            Message::Reply(Reply {
                outcome: Outcome::Value(value) | Outcome::ValueWithBlobs(value),
                ..
            }) => Some(std::mem::take(value)),
            _ => None,
        }
    }

    /// Puts the payload read after the message into its field (a message without one gets an
    /// empty payload: [`Head::finish`] sees to it).
    fn put_payload(&mut self, payload: Vec<u8>) {
        match self {
            Message::Call(call) => call.args = payload,
            Message::Reply(Reply {
                outcome: Outcome::Value(value) | Outcome::ValueWithBlobs(value),
                ..
            }) => *value = payload,
            _ => debug_assert!(payload.is_empty(), "a payload for a message without one"),
        }
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
    fn a_value_with_blobs_travels_after_its_message_as_any_payload() {
        let value = vec![6u8; 200_000];
        let at = value.as_ptr();
        let reply = Message::Reply(Reply {
            id: 4,
            outcome: Outcome::ValueWithBlobs(value),
        });
        let expected = reply.clone();
        let framed = reply.into_framed(frame::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(framed.body.as_ptr(), at, "the payload was copied");
        let whole = framed.into_vec();
        assert_eq!(
            Message::decode(&whole[frame::HEADER_LEN..]).unwrap(),
            expected
        );
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
    fn a_payload_is_moved_into_the_frame_and_read_back_after_the_message() {
        let value = vec![5u8; 300_000];
        let at = value.as_ptr();
        let reply = Message::Reply(Reply {
            id: 3,
            outcome: Outcome::Value(value),
        });
        let expected = reply.clone();
        let framed = reply.into_framed(frame::DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(framed.body.as_ptr(), at, "the payload was copied");
        let head = Message::decode_head(&framed.head[frame::HEADER_LEN..]).unwrap();
        assert_eq!(
            (head.payload_len, head.payload_at),
            (300_000, framed.head.len() - frame::HEADER_LEN)
        );
        let whole = framed.into_vec();
        let size = u32::from_be_bytes(whole[..frame::HEADER_LEN].try_into().unwrap());
        assert_eq!(size as usize, whole.len() - frame::HEADER_LEN);
        assert_eq!(
            Message::decode(&whole[frame::HEADER_LEN..]).unwrap(),
            expected
        );
    }

    #[test]
    fn a_hello_is_its_encoding_alone_so_any_version_reads_it() {
        let hello = Message::Hello(Hello::client(1024));
        let frame = hello.to_frame(1024).unwrap();
        assert_eq!(&frame[frame::HEADER_LEN..], codec::encode(&hello).unwrap());
        assert_eq!(Message::decode(&frame[frame::HEADER_LEN..]).unwrap(), hello);
    }

    #[test]
    fn a_payload_of_another_length_than_said_is_refused() {
        let call = Message::Call(Call {
            id: 1,
            chain: None,
            kind: CallKind::Function,
            function: "echo".into(),
            encoding: Encoding::Json,
            args: b"[1]".to_vec(),
            contract: None,
            time_left_ms: None,
        });
        let frame = call.to_frame(1024).unwrap();
        let payload = &frame[frame::HEADER_LEN..];
        assert!(matches!(
            Message::decode(&payload[..payload.len() - 1]),
            Err(MessageError::PayloadLength { said: 3, found: 2 })
        ));
        let mut longer = payload.to_vec();
        longer.push(b' ');
        assert!(matches!(
            Message::decode(&longer),
            Err(MessageError::PayloadLength { said: 3, found: 4 })
        ));
        // The payload inside the message (protocol 6's frame) rather than after it.
        let mut inside = codec::encode(&call).unwrap();
        inside.push(0);
        assert!(matches!(
            Message::decode(&inside),
            Err(MessageError::PayloadInside(3))
        ));
        let mut after_hello = codec::encode(&Message::Hello(Hello::client(1))).unwrap();
        after_hello.extend_from_slice(b"xy");
        assert!(matches!(
            Message::decode(&after_hello),
            Err(MessageError::NoPayload(2))
        ));
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
