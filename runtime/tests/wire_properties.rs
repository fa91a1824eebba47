//! Properties of what a peer reads from the network, over generated inputs (proptest): every
//! message survives framing however the bytes are cut into reads, a secured link carries any
//! bytes in any pieces, and no input makes the frame or message decoder panic or return more
//! than its limit. The cargo-fuzz targets (`make fuzz`) search the same decoders further.

use std::pin::Pin;
use std::task::{Context, Poll};

use netrun::wire::frame::{FrameError, HEADER_LEN, read_frame};
use netrun::wire::message::{Call, CallKind, Encoding, Hello, Message, Reply};
use netrun::wire::secure::{self, ClusterKey, Initiated, Opener, Sealer};
use netrun_abi::{CallError, Contract, Outcome, TimeoutStage};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// A reader that hands out its bytes in the given read sizes (then whatever is left at once).
struct Chunked {
    bytes: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let size = this.sizes.pop().unwrap_or(usize::MAX).max(1);
        let end = this.bytes.len().min(this.at + size.min(buf.remaining()));
        buf.put_slice(&this.bytes[this.at..end]);
        this.at = end;
        Poll::Ready(Ok(()))
    }
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

fn bytes(most: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..most)
}

fn outcome() -> impl Strategy<Value = Outcome> {
    let stage = prop_oneof![
        Just(TimeoutStage::Connecting),
        Just(TimeoutStage::Queued),
        Just(TimeoutStage::Running),
        Just(TimeoutStage::Reply),
    ];
    prop_oneof![
        bytes(300).prop_map(Outcome::Value),
        text().prop_map(Outcome::Flag),
        (text(), text(), text(), text()).prop_map(|(peer, function, kind, message)| {
            Outcome::Error(CallError::Remote {
                peer,
                function,
                kind,
                message,
            })
        }),
        (text(), text(), any::<u64>(), stage).prop_map(|(peer, function, after_ms, stage)| {
            Outcome::Error(CallError::Timeout {
                peer,
                function,
                after_ms,
                stage,
            })
        }),
        (text(), prop::collection::vec(text(), 0..4)).prop_map(|(function, available)| {
            Outcome::Error(CallError::InvalidConnection {
                peer: "127.0.0.1:2000 -> base".into(),
                function,
                available,
            })
        }),
    ]
}

fn hello() -> impl Strategy<Value = Message> {
    let fields = (
        any::<u32>(),
        prop::option::of(text()),
        text(),
        any::<bool>(),
        text(),
        any::<u64>(),
    );
    fields.prop_map(
        |(protocol_version, peer_id, group, hub, module_hash, max_frame)| {
            Message::Hello(Hello {
                protocol_version,
                peer_id,
                group,
                hub,
                module_hash,
                runtime_version: "0.1.0".into(),
                max_frame,
            })
        },
    )
}

fn call() -> impl Strategy<Value = Message> {
    let contract = (any::<u64>(), text()).prop_map(|(fingerprint, signature)| Contract {
        fingerprint,
        signature,
    });
    let fields = (
        any::<u64>(),
        prop::option::of(any::<u64>()),
        any::<bool>(),
        text(),
        bytes(2000),
        prop::option::of(contract),
        prop::option::of(any::<u64>()),
    );
    fields.prop_map(
        |(id, chain, event, function, args, contract, time_left_ms)| {
            Message::Call(Call {
                id,
                chain,
                kind: if event {
                    CallKind::Event
                } else {
                    CallKind::Function
                },
                function,
                encoding: if event {
                    Encoding::Bincode
                } else {
                    Encoding::Json
                },
                args,
                contract,
                time_left_ms,
            })
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    let reply =
        (any::<u64>(), outcome()).prop_map(|(id, outcome)| Message::Reply(Reply { id, outcome }));
    prop_oneof![hello(), text().prop_map(Message::Refused), call(), reply]
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// The frames of `stream`, read with limit `max`, and how the stream ended.
fn read_all(stream: Chunked, max: usize) -> (Vec<Vec<u8>>, FrameError) {
    block_on(async move {
        let mut reader = stream;
        let mut frames = Vec::new();
        loop {
            let mut buf = Vec::new();
            match read_frame(&mut reader, &mut buf, max).await {
                // Whole or a piece, a frame's payload is the bytes after its header.
                Ok(_kind) => frames.push(buf),
                Err(end) => return (frames, end),
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_survive_framing_cut_anywhere(
        messages in prop::collection::vec(message(), 1..6),
        sizes in prop::collection::vec(0usize..40, 0..200),
    ) {
        let mut bytes = Vec::new();
        for message in &messages {
            message.encode_frame(&mut bytes, 1 << 20).unwrap();
        }
        let (frames, end) = read_all(Chunked { bytes, at: 0, sizes }, 1 << 20);
        prop_assert!(matches!(end, FrameError::Closed), "{end:?}");
        let decoded: Vec<Message> = frames.iter().map(|f| Message::decode(f).unwrap()).collect();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn no_bytes_make_the_decoders_panic_or_overrun_their_limit(
        stream in bytes(600),
        max in 0usize..300,
        sizes in prop::collection::vec(0usize..20, 0..50),
    ) {
        let (frames, end) = read_all(Chunked { bytes: stream.clone(), at: 0, sizes }, max);
        let mut at = 0;
        for frame in &frames {
            prop_assert!(frame.len() <= max);
            prop_assert_eq!(&stream[at + HEADER_LEN..at + HEADER_LEN + frame.len()], &frame[..]);
            at += HEADER_LEN + frame.len();
            // Any payload decodes or is refused; an accepted one encodes back to itself.
            if let Ok(message) = Message::decode(frame) {
                let framed = message.to_frame(u32::MAX as usize).unwrap();
                prop_assert_eq!(Message::decode(&framed[HEADER_LEN..]).unwrap(), message);
            }
        }
        match end {
            FrameError::Closed => prop_assert_eq!(at, stream.len()),
            FrameError::Truncated => prop_assert!(at < stream.len()),
            FrameError::TooLarge { size, .. } => prop_assert!(size > max),
            FrameError::Io(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn a_secured_link_carries_any_bytes_in_any_pieces(
        pieces in prop::collection::vec(bytes(70_000), 1..4),
    ) {
        let sent: Vec<u8> = pieces.concat();
        let received = block_on(async move {
            let key = ClusterKey::from_secret(b"property secret");
            let (mut near, mut far) = tokio::io::duplex(1 << 16);
            let respond = async {
                // The serving side has read the magic before it responds (see `accept`).
                let mut magic = [0u8; 4];
                far.read_exact(&mut magic).await.unwrap();
                assert_eq!(magic, secure::SECURE_MAGIC);
                secure::respond(&mut far, &key).await
            };
            let (initiated, responded) = tokio::join!(secure::initiate(&mut near, &key), respond);
            let Initiated::Secured(near_transport) = initiated.unwrap() else {
                panic!("the responder has the secret");
            };
            let (_near_read, near_write) = tokio::io::split(near);
            let (far_read, _far_write) = tokio::io::split(far);
            let mut sealer = Sealer::new(near_write, near_transport);
            let mut opener = Opener::new(far_read, responded.unwrap());
            let write = async {
                for piece in &pieces {
                    sealer.write_all(piece).await.unwrap();
                    sealer.flush().await.unwrap();
                }
                sealer.shutdown().await.unwrap();
            };
            let mut received = Vec::new();
            let read = opener.read_to_end(&mut received);
            let ((), read) = tokio::join!(write, read);
            read.unwrap();
            received
        });
        prop_assert_eq!(received, sent);
    }
}
