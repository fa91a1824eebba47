//! Every way a call or an entry can fail, as the CLI reports it (exit 1, message on stderr) and
//! as guest code sees it: remote panic, missing function, bad arguments, dead and silent peers,
//! a failing entry.

use std::time::Duration;

use netrun_tests::{Ports, TestPeer, app, call, run_entry};

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
