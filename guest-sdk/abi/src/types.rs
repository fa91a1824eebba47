//! Types that cross the host/guest boundary (and, through the host, the wire).
//!
//! Every type here is encoded with [`crate::codec`]. [`CallError`] is what a caller can match on,
//! on either side: the guest SDK re-exports it as `net::Error`.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};

/// A call the guest asks the host to make (imports `net.call` and `net.call_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRequest {
    /// Which peer runs the function.
    pub target: CallTarget,
    /// Registered name of the function (its tag if it has one).
    pub function: String,
    /// Arguments: the bincode of the tuple of the parameters.
    #[serde(with = "crate::codec::bytes")]
    pub args: Vec<u8>,
    /// The caller's view of the function's types, checked by the callee when present.
    pub contract: Option<Contract>,
    /// Overrides the peer's call timeout, in milliseconds. A call made while the guest runs a
    /// call gets at most what that call has left, whatever this says.
    pub timeout_ms: Option<u64>,
    /// `args` is a JSON array and the result comes back as JSON: a call of an app-net peer
    /// (the SDK makes it when a bincode call gets [`CallError::AppNetPeer`]). No flag handler
    /// runs for it.
    pub json: bool,
}

/// Where a [`CallRequest`] goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallTarget {
    /// The peer with this id.
    Peer(String),
    /// One live member of this group, chosen by the host: calls are spread over the members,
    /// and a member found unreachable (the call was never sent) is skipped for the next.
    AnyOf(String),
}

/// A [`CallTarget`] that borrows its name, for encoding a request without copying the name:
/// it encodes as the `CallTarget` it mirrors (the same variants, in the same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CallTargetRef<'a> {
    Peer(&'a str),
    AnyOf(&'a str),
}

impl CallTarget {
    /// This target, borrowed.
    pub fn borrowed(&self) -> CallTargetRef<'_> {
        match self {
            CallTarget::Peer(id) => CallTargetRef::Peer(id),
            CallTarget::AnyOf(group) => CallTargetRef::AnyOf(group),
        }
    }
}

/// What the host answers a guest's call (imports `net.call` and `net.call_wait`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallReply {
    pub outcome: Outcome,
    /// The peer that answered, for a call to [`CallTarget::AnyOf`] that reached one.
    pub served_by: Option<PeerInfo>,
}

/// Where a call's time ran out (see [`CallError::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeoutStage {
    /// Connecting to the peer or shaking hands with it: the call was never sent.
    Connecting,
    /// Waiting on the peer for a free instance: the call never ran.
    Queued,
    /// Running in the peer's guest, which was stopped.
    Running,
    /// Waiting for the reply: the call was sent and may or may not have run.
    Reply,
}

impl std::fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutStage::Connecting => "while connecting",
            TimeoutStage::Queued => "while queued for a free instance (it never ran)",
            TimeoutStage::Running => "while running (the guest was stopped)",
            TimeoutStage::Reply => "while waiting for the reply",
        })
    }
}

/// A function's type signature and its fingerprint (see [`crate::manifest::fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub fingerprint: u64,
    pub signature: String,
}

/// A [`Contract`] that borrows its signature (a stub's, which is static), for encoding a
/// request without copying it: it encodes as the `Contract` it mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContractRef<'a> {
    pub fingerprint: u64,
    pub signature: &'a str,
}

impl Contract {
    /// This contract, borrowed.
    pub fn borrowed(&self) -> ContractRef<'_> {
        ContractRef {
            fingerprint: self.fingerprint,
            signature: &self.signature,
        }
    }
}

/// What a call produced: returned by guest exports, by the `net.call` import and over the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// The encoded return value (bincode, or JSON text for a JSON call).
    Value(#[serde(with = "crate::codec::bytes")] Vec<u8>),
    /// The function answered with a flag; the caller's side resolves it.
    Flag(String),
    /// The call failed.
    Error(CallError),
    /// A bincode value with the blobs that travelled beside it, laid out as
    /// [`crate::blob::layout`] says: what a host makes of a guest's `Value` and the blobs the
    /// guest handed over with it, for the wire. The receiving host gives the guest the value
    /// and the blobs apart; a guest never makes or reads this variant.
    ValueWithBlobs(#[serde(with = "crate::codec::bytes")] Vec<u8>),
}

/// An [`Outcome`] read where it lies: the value borrows the buffer it was decoded from (same
/// encoding as `Outcome`), so reading a reply does not copy its value before decoding it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum OutcomeRef<'a> {
    Value(#[serde(borrow, with = "serde_bytes")] &'a [u8]),
    Flag(String),
    Error(CallError),
}

/// A [`CallReply`] read where it lies (see [`OutcomeRef`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallReplyRef<'a> {
    #[serde(borrow)]
    pub outcome: OutcomeRef<'a>,
    pub served_by: Option<PeerInfo>,
}

impl Outcome {
    /// The encoding of `Outcome::Value(codec::encode(value))`, made in one pass over `value`
    /// rather than two (its encoding, then a copy of that into the outcome's).
    pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        codec::encode_into(&VALUE_VARIANT, &mut out)?;
        codec::encode_nested(value, &mut out)?;
        Ok(out)
    }

    /// The encoding of `Outcome::Value(bytes)`, where `write` appends `bytes` to the buffer it
    /// is given (JSON text, say), made in one buffer: `write` writes after room for the
    /// outcome's head (the variant and the bytes' length, at most [`VALUE_HEAD_ROOM`] bytes),
    /// which is filled in once the length is known, and what the head did not need is dropped
    /// from the front (the bytes move within the buffer; nothing is copied into another).
    /// `capacity` is the room to start with, beyond the head's.
    pub fn encode_value_written<E>(
        capacity: usize,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<Vec<u8>, E> {
        let mut out = Vec::with_capacity(VALUE_HEAD_ROOM + capacity);
        out.resize(VALUE_HEAD_ROOM, 0);
        write(&mut out)?;
        let len = (out.len() - VALUE_HEAD_ROOM) as u64;
        let mut head = [0u8; VALUE_HEAD_ROOM];
        // The variant index, then the byte string's length; neither can fail to fit.
        let variant =
            codec::encode_into_slice(&VALUE_VARIANT, &mut head).expect("a variant index fits");
        let length = codec::encode_into_slice(&len, &mut head[variant..]).expect("a length fits");
        let start = VALUE_HEAD_ROOM - (variant + length);
        out[start..VALUE_HEAD_ROOM].copy_from_slice(&head[..variant + length]);
        out.drain(..start);
        Ok(out)
    }
}

/// The variant index of [`Outcome::Value`], as the derived encoding writes it.
const VALUE_VARIANT: u32 = 0;

/// The most an encoded [`Outcome::Value`]'s head takes: its variant index (one byte for
/// [`VALUE_VARIANT`]) and its bytes' length (a `u64`, at most nine bytes).
pub const VALUE_HEAD_ROOM: usize = 10;

impl CallRequest {
    /// The encoding of a `CallRequest` whose `args` are `codec::encode(args)`, made in one pass
    /// over the arguments rather than two (their encoding, then a copy into the request's),
    /// from a borrowed target and contract (a call copies neither).
    pub fn encode_with_args<A: Serialize + ?Sized>(
        target: CallTargetRef<'_>,
        function: &str,
        args: &A,
        contract: Option<ContractRef<'_>>,
        timeout_ms: Option<u64>,
        json: bool,
    ) -> Result<Vec<u8>, CodecError> {
        // The fields in their declared order, as the derived encoding writes them.
        let mut out = Vec::new();
        codec::encode_into(&(target, function), &mut out)?;
        codec::encode_nested(args, &mut out)?;
        codec::encode_into(&(contract, timeout_ms, json), &mut out)?;
        Ok(out)
    }
}

/// An event the guest triggered (import `net.trigger`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTrigger {
    pub event: String,
    /// The event function's return value, bincode: the arguments of each subscriber's handler.
    #[serde(with = "crate::codec::bytes")]
    pub value: Vec<u8>,
    /// The same value as JSON, for subscribers that take JSON (app-net peers): present when
    /// the host said it has some (import `event_json`) and the value has a JSON form.
    pub json: Option<Vec<u8>>,
}

/// What a subscriber sends to the built-in `subscribe` (and `unsubscribe`). The subscriber is
/// the calling peer, named by its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    pub event: String,
    /// The handler's registered name on the subscriber.
    pub handler: String,
    /// The handler's contract, sent back with every delivery.
    pub contract: Contract,
    /// The type the handler's arguments form (see `Record::accepts`); the event's return
    /// type must be the same.
    pub accepts: String,
}

/// One registered subscription: `handler` on `peer` receives `event`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    pub event: String,
    /// Peer id: the subscriber (in [`PeerDetails::subscribers`]) or the publisher (in
    /// [`PeerDetails::subscriptions`]).
    pub peer: String,
    pub handler: String,
}

/// Which peers `net.peers` returns. Empty `groups` means every group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerQuery {
    /// Only peers on this peer's host.
    pub on_host: bool,
    /// Only peers in one of these groups (empty: any group).
    pub groups: Vec<String>,
    /// Only hubs.
    pub hubs_only: bool,
    /// Rescan instead of answering from the cache.
    pub refresh: bool,
}

/// A peer as discovery sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Base64 of `"host:port -> group"`.
    pub id: String,
    pub host: String,
    pub port: u16,
    pub group: String,
    pub hub: bool,
    /// An app-net (Python) peer: it answers calls through the JSON bridge only, and knows no
    /// events of netrun's.
    pub appnet: bool,
}

impl PeerInfo {
    /// Where the peer listens and its group; displays as `host:port -> group`.
    pub fn address(&self) -> crate::peer_id::PeerAddress {
        crate::peer_id::PeerAddress::new(self.host.as_str(), self.port, self.group.as_str())
    }
}

/// What the built-in `info` connection answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDetails {
    /// The peer id (the original called it `tag`).
    pub tag: String,
    pub host: String,
    pub port: u16,
    pub group: String,
    pub hub: bool,
    /// Every connection the peer answers, built-ins included, sorted.
    pub connections: Vec<String>,
    /// Events this peer's module declares, sorted.
    pub events: Vec<String>,
    /// Handlers of other peers registered for this peer's events, sorted.
    pub subscribers: Vec<SubscriptionInfo>,
    /// This peer's handlers and the peers they are registered on, sorted.
    pub subscriptions: Vec<SubscriptionInfo>,
    /// Flags this peer's module declares, built-ins included, sorted.
    pub flags: Vec<String>,
    /// SHA-256 of the module bytes, hex.
    pub module_hash: String,
    /// Version of the `netrun` runtime serving the peer.
    pub runtime_version: String,
    /// Whether the peer serves app-net (Python) peers on its port, and looks for them.
    pub appnet: bool,
}

/// Why a call failed. Peers are named by their readable address, `host:port -> group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    #[error("peer {peer} is unreachable: {reason}")]
    PeerUnreachable { peer: String, reason: String },
    #[error("call to {function} on peer {peer} timed out after {after_ms} ms {stage}")]
    Timeout {
        peer: String,
        function: String,
        after_ms: u64,
        stage: TimeoutStage,
    },
    #[error(
        "call to {function} on peer {peer}: outcome unknown, the connection was lost after the call was sent ({reason}); it may or may not have run"
    )]
    OutcomeUnknown {
        peer: String,
        function: String,
        reason: String,
    },
    #[error(
        "peer {peer} has no connection {function:?} (INVALID_CONNECTION); it offers: {}",
        available.join(", ")
    )]
    InvalidConnection {
        peer: String,
        function: String,
        available: Vec<String>,
    },
    #[error(
        "contract mismatch calling {function} on peer {peer}: the caller has {caller}, the peer has {callee}"
    )]
    ContractMismatch {
        peer: String,
        function: String,
        caller: String,
        callee: String,
    },
    #[error("{function} failed on peer {peer}: {kind}: {message}")]
    Remote {
        peer: String,
        function: String,
        kind: String,
        message: String,
    },
    #[error("bad arguments for {function}: {message}")]
    BadArguments { function: String, message: String },
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { size: u64, max: u64 },
    #[error("{id:?} is not a peer id: {reason}")]
    InvalidPeerId { id: String, reason: String },
    /// The peer is an app-net (Python) peer: it takes JSON, not bincode. The SDK calls it
    /// again in JSON.
    #[error("peer {peer} is an app-net (Python) peer: call {function} with JSON arguments")]
    AppNetPeer { peer: String, function: String },
    #[error(
        "peer {peer} answered {function} with flag {flag}, which this module has no #[net::flag] handler for"
    )]
    UnknownFlag {
        peer: String,
        function: String,
        flag: String,
    },
    #[error("protocol error with peer {peer}: {message}")]
    Protocol { peer: String, message: String },
    #[error("codec error: {message}")]
    Codec { message: String },
    #[error("peer {peer} answered {function} with flag {flag}, and its handler here {message}")]
    FlagHandler {
        peer: String,
        function: String,
        flag: String,
        message: String,
    },
}

impl CallError {
    /// Whether making the same call again cannot run the function twice: true when it was
    /// never sent ([`CallError::PeerUnreachable`], a timeout while connecting), never ran (a
    /// timeout while queued) or was refused before running (no such connection, another
    /// contract, bad arguments, too large, a bad id). False when it may have run:
    /// [`CallError::OutcomeUnknown`], a timeout while running or waiting for the reply, a
    /// remote failure, or a flag's answer.
    ///
    /// ```
    /// use netrun_abi::{CallError, TimeoutStage};
    /// let lost = CallError::OutcomeUnknown { peer: "p".into(), function: "f".into(), reason: "reset".into() };
    /// assert!(!lost.is_safe_to_retry());
    /// let queued = CallError::Timeout { peer: "p".into(), function: "f".into(), after_ms: 10, stage: TimeoutStage::Queued };
    /// assert!(queued.is_safe_to_retry());
    /// ```
    pub fn is_safe_to_retry(&self) -> bool {
        match self {
            CallError::PeerUnreachable { .. }
            | CallError::InvalidConnection { .. }
            | CallError::ContractMismatch { .. }
            | CallError::BadArguments { .. }
            | CallError::FrameTooLarge { .. }
            | CallError::InvalidPeerId { .. }
            | CallError::AppNetPeer { .. } => true,
            CallError::Timeout { stage, .. } => {
                matches!(stage, TimeoutStage::Connecting | TimeoutStage::Queued)
            }
            CallError::OutcomeUnknown { .. }
            | CallError::Remote { .. }
            | CallError::UnknownFlag { .. }
            | CallError::Protocol { .. }
            | CallError::Codec { .. }
            | CallError::FlagHandler { .. } => false,
        }
    }
}

impl From<crate::peer_id::InvalidPeerId> for CallError {
    fn from(e: crate::peer_id::InvalidPeerId) -> Self {
        CallError::InvalidPeerId {
            id: e.id,
            reason: e.reason,
        }
    }
}

impl From<crate::codec::CodecError> for CallError {
    fn from(e: crate::codec::CodecError) -> Self {
        CallError::Codec {
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_outcome_encoded_in_one_pass_is_the_derived_encoding() {
        for len in [0usize, 7, 300, 70_000] {
            let value = (serde_bytes::ByteBuf::from(vec![1u8; len]), 5u32);
            let one_pass = Outcome::encode_value(&value).unwrap();
            let derived = codec::encode(&Outcome::Value(codec::encode(&value).unwrap())).unwrap();
            assert_eq!(one_pass, derived, "length {len}");
        }
    }

    #[test]
    fn a_value_outcome_written_after_its_head_room_is_the_derived_encoding() {
        // Lengths whose prefix takes one, three and five bytes, on either side of each step.
        for len in [0usize, 3, 250, 251, 300, 65_535, 65_536, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for capacity in [0, len, len + 100] {
                let written = Outcome::encode_value_written(capacity, |out| {
                    out.extend_from_slice(&bytes);
                    Ok::<(), ()>(())
                })
                .unwrap();
                let derived = codec::encode(&Outcome::Value(bytes.clone())).unwrap();
                assert_eq!(written, derived, "length {len}, capacity {capacity}");
            }
        }
        let failed = Outcome::encode_value_written(8, |out| {
            out.push(1);
            Err("cannot write")
        });
        assert_eq!(failed, Err("cannot write"));
    }

    #[test]
    fn a_request_encoded_in_one_pass_is_the_derived_encoding() {
        let args = (
            "bob".to_string(),
            serde_bytes::ByteBuf::from(vec![2u8; 1000]),
        );
        let contract = Some(Contract {
            fingerprint: 42,
            signature: "(String, ByteBuf) -> u32".into(),
        });
        for (target, contract, timeout_ms, json) in [
            (
                CallTarget::Peer("MTI3".into()),
                contract.clone(),
                Some(1500),
                false,
            ),
            (CallTarget::AnyOf("workers".into()), None, None, true),
        ] {
            let one_pass = CallRequest::encode_with_args(
                target.borrowed(),
                "greet",
                &args,
                contract.as_ref().map(Contract::borrowed),
                timeout_ms,
                json,
            )
            .unwrap();
            let derived = codec::encode(&CallRequest {
                target,
                function: "greet".into(),
                args: codec::encode(&args).unwrap(),
                contract: contract.clone(),
                timeout_ms,
                json,
            })
            .unwrap();
            assert_eq!(one_pass, derived);
        }
    }

    #[test]
    fn a_reply_read_where_it_lies_is_the_reply() {
        let replies = [
            CallReply {
                outcome: Outcome::Value(vec![4; 500]),
                served_by: None,
            },
            CallReply {
                outcome: Outcome::Flag("NULL".into()),
                served_by: None,
            },
            CallReply {
                outcome: Outcome::Error(CallError::Codec {
                    message: "bad".into(),
                }),
                served_by: None,
            },
        ];
        for reply in replies {
            let bytes = codec::encode(&reply).unwrap();
            let read: CallReplyRef = codec::decode_borrowed(&bytes).unwrap();
            let owned = match read.outcome {
                OutcomeRef::Value(bytes) => Outcome::Value(bytes.to_vec()),
                OutcomeRef::Flag(name) => Outcome::Flag(name),
                OutcomeRef::Error(e) => Outcome::Error(e),
            };
            assert_eq!(owned, reply.outcome);
            assert_eq!(read.served_by, reply.served_by);
        }
    }

    #[test]
    fn outcome_round_trips_each_variant() {
        let outcomes = [
            Outcome::Value(vec![1, 2, 3]),
            Outcome::Flag("NULL".into()),
            Outcome::Error(CallError::InvalidConnection {
                peer: "127.0.0.1:3010 -> None".into(),
                function: "nope".into(),
                available: vec!["info".into(), "null".into()],
            }),
        ];
        for outcome in outcomes {
            let back: Outcome = codec::decode(&codec::encode(&outcome).unwrap()).unwrap();
            assert_eq!(back, outcome);
        }
    }

    #[test]
    fn invalid_connection_lists_what_the_peer_offers() {
        let e = CallError::InvalidConnection {
            peer: "p".into(),
            function: "nope".into(),
            available: vec!["info".into(), "pass_through".into()],
        };
        let text = e.to_string();
        assert!(
            text.contains("\"nope\"") && text.contains("info, pass_through"),
            "{text}"
        );
    }
}
