//! A peer as a process: which port it binds, how it stops, and that a restart gets its port and
//! id back.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netrun_tests::{HOST, Ports, STOP_LIMIT, Scratch, TestPeer, app, arg, call};

#[track_caller]
fn expect_clean_exit(peer: &mut TestPeer, signal: libc::c_int) {
    let status = peer.stop_with(signal, STOP_LIMIT);
    assert!(
        status.is_some(),
        "still running {STOP_LIMIT:?} after signal {signal}; killed\n{}",
        peer.report()
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status {status:?} after signal {signal}\n{}",
        peer.report()
    );
}

/// Reads `stream` until the other side has closed it (EOF or reset), bounded.
fn wait_closed_by_peer(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn sigterm_stops_a_peer_with_exit_code_0_and_frees_its_port() {
    let ports = Ports::new();
    let mut peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "counter", &[]).expect_code(0);
    let (id, port) = (peer.id().to_string(), peer.port());
    expect_clean_exit(&mut peer, libc::SIGTERM);
    assert!(
        TcpListener::bind((HOST, port)).is_ok(),
        "port {port} is still taken after the peer exited"
    );
    call(&ports, &id, "counter", &["--timeout", "5"])
        .expect_code(1)
        .expect_stderr(&["unreachable"]);
}

#[test]
fn sigint_stops_a_peer_with_exit_code_0() {
    let ports = Ports::new();
    let mut peer = TestPeer::probe(&ports, &[]);
    expect_clean_exit(&mut peer, libc::SIGINT);
}

#[test]
fn a_restarted_peer_gets_its_port_and_id_back() {
    let ports = Ports::new();
    let mut first = TestPeer::probe(&ports, &[]);
    for expected in ["1", "2", "3"] {
        let out = call(&ports, first.id(), "counter", &[]);
        out.expect_code(0);
        assert_eq!(out.stdout.trim(), expected, "{out}");
    }
    let (id, port) = (first.id().to_string(), first.port());
    // A connection still open when the peer stops: the peer's side closes first, so its socket
    // on the peer's port lingers in TIME_WAIT, which must not keep the port from a restart.
    let mut held = TcpStream::connect((HOST, port)).expect("connect to the peer");
    expect_clean_exit(&mut first, libc::SIGTERM);
    assert!(
        wait_closed_by_peer(&mut held, Duration::from_secs(10)),
        "the held connection stayed open after the peer exited"
    );
    drop(held);

    let second = TestPeer::probe(&ports, &[]);
    assert_eq!(
        (second.id(), second.port()),
        (id.as_str(), port),
        "the restarted peer moved\n{}",
        second.report()
    );
    let out = call(&ports, second.id(), "counter", &[]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1", "a new process, new state\n{out}");
}

#[test]
fn a_peer_binds_the_first_free_port_of_its_range() {
    let ports = Ports::new();
    let first = TestPeer::probe(&ports, &[]);
    let second = TestPeer::probe(&ports, &[]);
    assert_eq!(first.port(), ports.start);
    assert_eq!(second.port(), ports.start + 1);
    // A port taken by something else is skipped.
    let _squatter = TcpListener::bind((HOST, ports.start + 2)).expect("bind loopback");
    let third = TestPeer::probe(&ports, &[]);
    assert_eq!(third.port(), ports.start + 3);
    assert_eq!(third.id(), Ports::id_of(ports.start + 3, "None"));
}

#[test]
fn a_restart_loads_the_compiled_module_from_the_cache() {
    let ports = Ports::new();
    let scratch = Scratch::new("module-cache");
    let dir = scratch.missing("cache");
    let env = [("NET_CACHE_DIR", arg(&dir))];
    let probe = app("core_probe");
    // The peer logs one of these before it listens; its stderr is read by another thread than
    // its stdout, so each test waits for the line it expects before looking for the other.
    let compiled = format!("compiled {}", arg(&probe));
    let loaded = format!("loaded {} from cache", arg(&probe));
    let log_limit = Duration::from_secs(10);
    let mut first = TestPeer::start(&ports, &probe, &[], &env);
    assert!(
        first.wait_for_stderr(&compiled, log_limit),
        "{}",
        first.report()
    );
    assert!(!first.stderr().contains(&loaded), "{}", first.report());
    first.terminate(STOP_LIMIT);
    let second = TestPeer::start(&ports, &probe, &[], &env);
    assert!(
        second.wait_for_stderr(&loaded, log_limit),
        "{}",
        second.report()
    );
    assert!(!second.stderr().contains(&compiled), "{}", second.report());
    // Still the same app.
    call(&ports, second.id(), "add", &["2", "3"]).expect_code(0);
    let uncached = TestPeer::start(&ports, &probe, &["--no-cache"], &env);
    assert!(
        uncached.wait_for_stderr(&compiled, log_limit),
        "{}",
        uncached.report()
    );
    assert!(
        !uncached.stderr().contains(&loaded),
        "{}",
        uncached.report()
    );
}
