//! Writes the fuzz targets' starting corpus (`make fuzz` runs it): well-formed frames,
//! messages and handshakes for the fuzzer to mutate, so it starts past the first length check.
//!
//! `cargo run --release --example fuzz_seeds -- DIR` writes `DIR/<target>/<seed>`.

use std::path::Path;

use netrun::wire::frame::HEADER_LEN;
use netrun::wire::message::{Call, CallKind, Encoding, Hello, Message, Reply};
use netrun::wire::secure::{self, ClusterKey};
use netrun_abi::{CallError, Outcome};

fn samples() -> Vec<(&'static str, Message)> {
    let mut peer = Hello::client(1 << 20);
    peer.peer_id = Some("127.0.0.1:2000 -> base".into());
    peer.group = "base".into();
    peer.module_hash = "ab".repeat(32);
    let call = Call {
        id: 1,
        chain: Some(7),
        kind: CallKind::Function,
        function: "pass_through".into(),
        encoding: Encoding::Json,
        args: b"[\"hello\"]".to_vec(),
        contract: None,
        time_left_ms: Some(1000),
    };
    let event = Call {
        kind: CallKind::Event,
        encoding: Encoding::Bincode,
        ..call.clone()
    };
    let error = CallError::Remote {
        peer: "127.0.0.1:2000 -> base".into(),
        function: "f".into(),
        kind: "panic".into(),
        message: "boom".into(),
    };
    vec![
        ("client_hello", Message::Hello(Hello::client(1 << 20))),
        ("peer_hello", Message::Hello(peer)),
        ("refused", Message::Refused("no".into())),
        ("call", Message::Call(call)),
        ("event", Message::Call(event)),
        ("value", reply(Outcome::Value(b"\"hello\"".to_vec()))),
        ("flag", reply(Outcome::Flag("NULL".into()))),
        ("error", reply(Outcome::Error(error))),
    ]
}

fn reply(outcome: Outcome) -> Message {
    Message::Reply(Reply { id: 1, outcome })
}

/// What an initiator with `key` sends first: the secured magic and its Noise message.
fn secured_opening(key: &ClusterKey) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let (mut near, mut far) = tokio::io::duplex(1 << 16);
        let initiate = async {
            let _ = secure::initiate(&mut near, key).await;
        };
        let read = async {
            // The magic, the Noise message's length (u16), the Noise message.
            let mut opening = vec![0u8; 6];
            far.read_exact(&mut opening).await.expect("the opening");
            let len = u16::from_be_bytes([opening[4], opening[5]]) as usize;
            opening.resize(6 + len, 0);
            far.read_exact(&mut opening[6..])
                .await
                .expect("the Noise message");
            drop(far);
            opening
        };
        tokio::join!(initiate, read).1
    })
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).expect("usage: fuzz_seeds DIR");
    let dir = Path::new(&dir);
    let mut stream = Vec::new();
    for (name, message) in samples() {
        let framed = message.to_frame(1 << 20).expect("a sample frame");
        write(dir, "message_decoder", name, &framed[HEADER_LEN..])?;
        // The frame target's first byte picks its limit: 20 is 1 MiB.
        write(dir, "frame_decoder", name, &[&[20u8][..], &framed].concat())?;
        stream.extend_from_slice(&framed);
        // The handshake target's first byte picks the peer's settings: 0 is no secret.
        if name.ends_with("hello") {
            write(dir, "handshake", name, &[&[0u8][..], &framed].concat())?;
            write(
                dir,
                "handshake",
                &format!("{name}_same_module"),
                &[&[2u8][..], &framed].concat(),
            )?;
        }
    }
    write(
        dir,
        "frame_decoder",
        "stream",
        &[&[20u8][..], &stream].concat(),
    )?;
    let opening = secured_opening(&ClusterKey::from_secret(b"fuzzing secret"));
    write(
        dir,
        "handshake",
        "secured",
        &[&[1u8][..], &opening].concat(),
    )?;
    write(
        dir,
        "handshake",
        "secured_to_plain",
        &[&[0u8][..], &opening].concat(),
    )?;
    Ok(())
}
