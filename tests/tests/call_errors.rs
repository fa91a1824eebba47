//! Every way a call or an entry can fail, as the CLI reports it (exit 1, message on stderr) and
//! as guest code sees it: remote panic, missing function, bad arguments, dead and silent peers,
//! frames over `--max-frame`, a failing entry; and the `net::Error` variants guest code
//! matches.

use std::time::Duration;

use netrun_tests::{Ports, TestPeer, app, arg, call, netrun, run_entry};

#[test]
fn a_remote_panic_comes_back_with_its_message_and_the_peer_keeps_serving() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let first = call(&ports, peer.id(), "counter", &[]);
    first.expect_code(0);
    assert_eq!(first.stdout.trim(), "1", "{first}");

    call(&ports, peer.id(), "panic_with", &[r#""remote boom""#])
        .expect_code(1)
        .expect_stderr(&["remote boom", "panic"]);

    // From guest code: the error the stub returns carries the remote message.
    let entry = run_entry(&ports, &app("core_probe"), "remote_errors", &[]);
    entry.expect_code(0);
    let panic_line = entry
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("panic: "))
        .unwrap_or_else(|| panic!("no `panic: ` line\n{entry}"));
    assert!(panic_line.contains("remote boom"), "{entry}");

    // The peer still serves; the trapped instance was replaced, so guest state starts again.
    let after = call(&ports, peer.id(), "counter", &[]);
    after.expect_code(0);
    assert_eq!(after.stdout.trim(), "1", "state after the trap\n{after}");
    call(&ports, peer.id(), "echo", &[r#""still here""#]).expect_code(0);
}

#[test]
fn a_missing_function_lists_what_the_peer_offers() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "no_such_function", &[])
        .expect_code(1)
        .expect_stderr(&[
            "INVALID_CONNECTION",
            "no_such_function",
            "pass_through",
            "echo",
            "tagged_name",
        ]);

    let entry = run_entry(&ports, &app("core_probe"), "remote_errors", &[]);
    entry.expect_code(0);
    let missing = entry
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("missing: "))
        .unwrap_or_else(|| panic!("no `missing: ` line\n{entry}"));
    for word in ["INVALID_CONNECTION", "pass_through"] {
        assert!(missing.contains(word), "{word} missing\n{entry}");
    }
}

#[test]
fn arguments_of_the_wrong_type_are_refused_by_the_callee() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "add", &[r#""two""#, "3"])
        .expect_code(1)
        .expect_stderr(&["bad arguments", "add", "i64"]);
    // Too few arguments too.
    call(&ports, peer.id(), "add", &["2"])
        .expect_code(1)
        .expect_stderr(&[
            "bad arguments for add: expected arguments (i64, i64)",
            "invalid length 1",
        ]);
    // And the peer keeps serving.
    let out = call(&ports, peer.id(), "add", &["2", "3"]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "5", "{out}");
}

#[test]
fn a_dead_peer_is_unreachable_before_the_timeout() {
    let ports = Ports::new();
    let dead = Ports::id_of(ports.unused(7), "None");
    let out = call(&ports, &dead, "pass_through", &["1", "--timeout", "5"]);
    out.expect_code(1).expect_stderr(&["unreachable"]);
    // Nobody listens: the connection is refused at once, it is not a timeout.
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took as long as the timeout\n{out}"
    );
}

#[test]
fn a_peer_that_never_answers_times_out() {
    // Accepts connections (the kernel does) and never says a word.
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind loopback");
    let port = silent.local_addr().expect("local address").port();
    let ports = Ports::new();
    let out = call(
        &ports,
        &Ports::id_of(port, "None"),
        "pass_through",
        &["1", "--timeout", "1"],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("no answer"),
        "{out}"
    );
    assert!(out.elapsed < Duration::from_secs(30), "{out}");
}

#[test]
fn a_failing_entry_exits_1_with_its_message() {
    let ports = Ports::new();
    run_entry(&ports, &app("core_probe"), "fail", &[])
        .expect_code(1)
        .expect_stderr(&["entry failed on purpose"]);
}

#[test]
fn an_entry_that_needs_a_peer_fails_clearly_without_one() {
    let ports = Ports::new();
    let out = run_entry(&ports, &app("core_probe"), "typed_parity", &[]);
    out.expect_code(1).expect_stderr(&["no other peer"]);
    assert!(!out.stdout.contains("typed parity ok"), "{out}");
}

/// Hostile bytes on a peer's port: a frame header claiming 4 GiB, a frame of garbage, a
/// connection that says nothing. Each connection is dropped (the reason is logged at debug level,
/// with NET_DEV); the peer keeps serving calls, its instance state untouched.
#[test]
fn hostile_bytes_close_only_their_connection() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "counter", &[]).expect_code(0);
    let hostile: [&[u8]; 3] = [
        &u32::MAX.to_be_bytes(),                     // claims a 4 GiB frame
        &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff], // a frame that is no message
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",        // another protocol
    ];
    for bytes in hostile {
        let mut stream = TcpStream::connect(("127.0.0.1", peer.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        // The peer closes the connection (read returns 0 or a reset), it does not hang.
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "the peer answered hostile bytes {bytes:?}"),
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut,
                "the peer kept a hostile connection open: {e}"
            ),
        }
    }
    // A silent connection does not block others.
    let _silent = TcpStream::connect(("127.0.0.1", peer.port())).unwrap();
    let after = call(&ports, peer.id(), "counter", &[]);
    after.expect_code(0);
    assert_eq!(after.stdout.trim(), "2", "state survived: {after}");
}

/// Guest code matches the error variants: `Timeout` (within `NET_TIMEOUT`, not the default
/// 30 s), `PeerUnreachable`, `InvalidPeerId`, `BadArguments`, `FrameTooLarge` (the entry's
/// peer has `--max-frame 16384` and sends 64 KiB).
#[test]
fn guest_code_matches_each_kind_of_error() {
    let ports = Ports::new();
    let group = ("NET_GROUP", "errors");
    let _server = TestPeer::probe(&ports, &[group]);
    let silent = ports.silent(8);
    let dead = Ports::id_of(ports.unused(7), "None");
    let (silent_env, dead_env) = (
        format!("NETRUN_SILENT_PEER={}", silent.id()),
        format!("NETRUN_DEAD_PEER={dead}"),
    );
    let out = netrun(
        &ports,
        &[
            "run",
            arg(&app("core_probe")),
            "--entry",
            "match_errors",
            "--max-frame",
            "16384",
            "--env",
            &silent_env,
            "--env",
            &dead_env,
        ],
        &[group, ("NET_TIMEOUT", "2")],
    );
    out.expect_code(0);
    let line = |prefix: &str| -> String {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{out}"))
            .to_string()
    };
    // The waiting time is the runtime's own report: at least NET_TIMEOUT, short of the default.
    let after_ms: u64 = line("Timeout: echo after ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap_or_else(|e| panic!("not a number of ms ({e})\n{out}"));
    assert!((2000..30_000).contains(&after_ms), "{out}");
    let dead_port = ports.start + 7;
    assert_eq!(
        line("PeerUnreachable: "),
        format!("127.0.0.1:{dead_port} -> None"),
        "{out}"
    );
    assert_eq!(line("InvalidPeerId: "), "not a peer id", "{out}");
    assert_eq!(line("BadArguments: "), "add", "{out}");
    let (size, max) = line("FrameTooLarge: ")
        .split_once(" > ")
        .map(|(size, max)| (size.parse::<u64>(), max.to_string()))
        .unwrap_or_else(|| panic!("not `SIZE > MAX`\n{out}"));
    assert_eq!(max, "16384", "{out}");
    assert!(size.is_ok_and(|size| size > 64 * 1024), "{out}");
}

/// `--max-frame` on both ends: a caller learns the peer's limit from the handshake and refuses
/// to send a call over it, the peer answers `FrameTooLarge` for a reply over it and keeps
/// serving, and a client refuses to send a frame over its own. (A peer that receives a frame
/// over its limit anyway closes that connection: `hostile_bytes_close_only_their_connection`.)
#[test]
fn frames_over_max_frame_are_refused_end_to_end() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let small = TestPeer::start(&ports, &app("core_probe"), &["--max-frame", "4096"], &[]);
    let big = format!("\"{}\"", "x".repeat(8 * 1024));

    // Over the peer's limit: the caller refuses to send it.
    call(&ports, small.id(), "echo", &[&big])
        .expect_code(1)
        .expect_stderr(&["frame of", "exceeds the limit of 4096 bytes"]);
    // A reply over the peer's limit is an error reply naming the limit.
    call(&ports, small.id(), "make_bytes", &["8192"])
        .expect_code(1)
        .expect_stderr(&["exceeds the limit of 4096 bytes"]);
    // Small calls still work.
    let out = call(&ports, small.id(), "add", &["2", "3"]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "5", "{out}");

    // Over the caller's own limit: refused before sending.
    call(&ports, peer.id(), "echo", &[&big, "--max-frame", "4096"])
        .expect_code(1)
        .expect_stderr(&["frame of", "exceeds the limit of 4096 bytes"]);
    let out = call(&ports, peer.id(), "counter", &[]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1", "nothing reached the peer\n{out}");
}
