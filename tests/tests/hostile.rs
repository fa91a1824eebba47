//! Hostile input on a peer's port, from real sockets on loopback: malformed frames, a silent or
//! dribbling client, a thousand idle connections, thousands of calls whose replies are never
//! read. Each closes (or stalls) only its own connection: the peer keeps answering normal
//! calls, and its resident memory stays bounded (read from `/proc/PID/status`, not timed).
//! Also `--require-same-module`, and arguments with blobs that do not add up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use netrun::wire::message::{Call, CallKind, Encoding, Hello, Message};
use netrun_tests::*;
use serde_json::json;

/// How long the peer gives a handshake in these tests (its default is 10 s).
const HANDSHAKE: &str = "2";

/// Whether the peer closes `stream` (a read ends, or fails) rather than leaving it hanging.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// A frame of `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Connects from `from` (an address of 127.0.0.0/8) to the peer.
fn connect_from(from: [u8; 4], peer: &TestPeer) -> TcpStream {
    let socket = socket_from(from);
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], peer.port())).into())
        .unwrap_or_else(|e| panic!("cannot connect to the peer: {e}"));
    socket.into()
}

/// A TCP socket bound to `from` (port chosen by the kernel).
fn socket_from(from: [u8; 4]) -> socket2::Socket {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .unwrap_or_else(|e| panic!("cannot bind {from:?}: {e}"));
    socket
}

/// A client that shook hands, as the CLI does.
fn shaken(peer: &TestPeer) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", peer.port())).expect("connect");
    let hello = Message::Hello(Hello::client(1 << 20))
        .to_frame(1 << 20)
        .unwrap();
    stream.write_all(&hello).unwrap();
    assert!(matches!(read_message(&mut stream), Ok(Message::Hello(_))));
    stream
}

/// The next (whole) frame's message on `stream`.
fn read_message(stream: &mut TcpStream) -> Result<Message, netrun::wire::message::MessageError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).unwrap();
    Message::decode(&payload)
}

/// A peer that gives a handshake [`HANDSHAKE`] seconds.
fn impatient_peer(ports: &Ports) -> TestPeer {
    TestPeer::start(
        ports,
        &app("core_probe"),
        &["--handshake-timeout", HANDSHAKE],
        &[],
    )
}

#[track_caller]
fn still_answers(ports: &Ports, peer: &TestPeer) {
    let out = call(
        ports,
        peer.id(),
        "echo",
        &[r#""still here""#, "--timeout", "20"],
    );
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), r#""still here""#, "{out}");
}

#[test]
fn malformed_frames_and_slow_clients_close_only_their_own_connection() {
    let ports = Ports::new();
    let peer = impatient_peer(&ports);
    let mut truncated = frame(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    truncated.truncate(8);
    // A message kind the protocol does not have: an enum variant past the last.
    let unknown_kind = frame(&[0x7f, 1, 2, 3]);
    let inputs: [(&str, Vec<u8>); 4] = [
        ("garbage", b"\x00\x00\x00\x05\xff\xff\xff\xff\xff".to_vec()),
        ("a 4 GiB length", u32::MAX.to_be_bytes().to_vec()),
        ("an unknown message kind", unknown_kind),
        ("a truncated frame", truncated),
    ];
    for (what, bytes) in inputs {
        let mut stream = TcpStream::connect(("127.0.0.1", peer.port())).unwrap();
        stream.write_all(&bytes).unwrap();
        if what == "a truncated frame" {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(
            closed_by_peer(&mut stream),
            "{what}: the peer kept the connection open"
        );
        still_answers(&ports, &peer);
    }
    // A client that dribbles its hello a byte at a time is dropped when the handshake's time
    // is up, though it never stops sending.
    let mut slow = TcpStream::connect(("127.0.0.1", peer.port())).unwrap();
    let hello = Message::Hello(Hello::client(1 << 20))
        .to_frame(1 << 20)
        .unwrap();
    let dropped = wait_until(Duration::from_secs(30), || {
        for byte in &hello[..hello.len() - 1] {
            if slow.write_all(&[*byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        true
    });
    assert!(dropped);
    assert!(
        closed_by_peer(&mut slow),
        "the dribbling client was not dropped"
    );
    still_answers(&ports, &peer);
}

#[test]
fn a_thousand_idle_connections_and_unread_replies_neither_stop_the_peer_nor_grow_its_memory() {
    let ports = Ports::new();
    let peer = impatient_peer(&ports);
    still_answers(&ports, &peer);
    let before = peer.resident_kib();
    // A thousand connections that say nothing, from another loopback address (the peer takes
    // at most 256 at once from one address, and drops them when their handshake time is up).
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| connect_from([127, 0, 0, 2], &peer))
        .collect();
    still_answers(&ports, &peer);
    // Two thousand calls sent on one connection without ever reading a reply: the peer serves
    // a bounded number at once and reads no further meanwhile.
    let mut greedy = shaken(&peer);
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let args = serde_json::to_vec(&json!(["x".repeat(64 * 1024)])).unwrap();
    let mut sent = 0;
    for id in 1..=2000u64 {
        let call = Message::Call(Call {
            id,
            chain: None,
            kind: CallKind::Function,
            function: "echo".into(),
            encoding: Encoding::Json,
            args: args.clone(),
            contract: None,
            time_left_ms: None,
        });
        if greedy.write_all(&call.to_frame(1 << 20).unwrap()).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(
        sent > 300,
        "the peer took only {sent} calls before pushing back"
    );
    still_answers(&ports, &peer);
    let after = peer.resident_kib();
    assert!(
        after < before + 64 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    drop((idle, greedy));
    still_answers(&ports, &peer);
}

#[test]
fn a_peer_that_requires_its_own_module_refuses_peers_running_another_and_serves_clients() {
    let ports = Ports::new();
    let strict_core = TestPeer::start(&ports, &app("core_probe"), &["--require-same-module"], &[]);
    let strict_sandbox = TestPeer::start(
        &ports,
        &app("sandbox_probe"),
        &["--require-same-module"],
        &[],
    );
    let sandbox = TestPeer::start(&ports, &app("sandbox_probe"), &[], &[]);
    // A peer running another module is refused, saying why.
    let out = call(
        &ports,
        sandbox.id(),
        "relay",
        &[&json!([strict_core.id()]).to_string()],
    );
    out.expect_code(1)
        .expect_stderr(&["serves only peers running its own module"]);
    // One running the same module is served, and so is the CLI, which runs none.
    let out = call(
        &ports,
        sandbox.id(),
        "relay",
        &[&json!([strict_sandbox.id()]).to_string()],
    );
    out.expect_code(0);
    assert!(out.stdout.contains(strict_sandbox.id()), "{out}");
    still_answers(&ports, &strict_core);
}

/// Sends `call` on `stream` and reads its reply's outcome.
fn ask(stream: &mut TcpStream, call: Call) -> netrun_abi::Outcome {
    let id = call.id;
    stream
        .write_all(&Message::Call(call).to_frame(1 << 24).unwrap())
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match read_message(stream) {
        Ok(Message::Reply(reply)) if reply.id == id => reply.outcome,
        other => panic!("expected the reply to call {id}, got {other:?}"),
    }
}

/// A call of `echo_bytes` whose arguments are said to carry blobs.
fn with_blobs(id: u64, args: Vec<u8>) -> Call {
    Call {
        id,
        chain: None,
        kind: CallKind::Function,
        function: "echo_bytes".into(),
        encoding: Encoding::BincodeWithBlobs,
        args,
        contract: None,
        time_left_ms: None,
    }
}

#[test]
fn arguments_with_blobs_that_do_not_add_up_are_refused_and_the_peer_serves_on() {
    use netrun_abi::blob::layout::{Gather, split};
    use netrun_abi::{CallError, Outcome, codec};
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let mut stream = shaken(&peer);
    let blob: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    // `(Bytes,)` whose bytes travel beside: their length, then no bytes inline.
    let body = codec::encode(&((blob.len() as u64, serde_bytes::Bytes::new(&[])),)).unwrap();

    // Well laid out: the guest takes the blob, and its result sends it back beside the value.
    let mut gather = Gather::default();
    gather.push(0, &blob).unwrap();
    let Outcome::ValueWithBlobs(payload) = ask(&mut stream, with_blobs(1, gather.finish(&body)))
    else {
        panic!("the echo of a blob came back without it");
    };
    let at = split(&payload).expect("a payload with blobs");
    assert_eq!(&payload[at.blob(0, blob.len()).unwrap()], &blob[..]);
    assert_eq!(&payload[at.body.clone()], &body[..]);

    // Not laid out as a payload with blobs at all.
    match ask(&mut stream, with_blobs(2, vec![1, 2, 3])) {
        Outcome::Error(CallError::Codec { message }) => {
            assert!(message.contains("too short for its lengths"), "{message}")
        }
        other => panic!("expected a codec error, got {other:?}"),
    }
    // A value that asks for a blob its payload does not carry.
    match ask(&mut stream, with_blobs(3, Gather::default().finish(&body))) {
        Outcome::Error(CallError::BadArguments { message, .. }) => assert!(
            message.contains("blob 0 of 70000 bytes did not come with the value"),
            "{message}"
        ),
        other => panic!("expected bad arguments, got {other:?}"),
    }
    still_answers(&ports, &peer);
}
