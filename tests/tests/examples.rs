//! The original app-net example `simple_connection`, ported: peer1 serves the app, peer2 runs
//! the entry `peer2`, which finds peer1 and calls `connected_function("My Message!")` there, so
//! the message is printed by peer1.

use std::time::Duration;

use netrun_tests::{Input, Ports, TestPeer, app, arg, run_entry};

const MESSAGE: &str = "My Message!";

#[test]
fn simple_connection_prints_the_message_on_peer1() {
    let ports = Ports::new();
    let example = app("simple_connection");
    // peer1 as the example's README starts it: `netrun APP.wasm`.
    let peer1 = TestPeer::start_command(&ports, &[arg(&example)], &[], Input::Null);
    assert_eq!(peer1.id(), Ports::id_of(peer1.port(), "None"));

    let peer2 = run_entry(&ports, &example, "peer2", &[]);
    peer2.expect_code(0);
    assert!(
        peer1.wait_for_stdout(MESSAGE, Duration::from_secs(10)),
        "peer1 never printed {MESSAGE:?}\n{}",
        peer1.report()
    );
    assert_eq!(
        peer1.stdout().matches(MESSAGE).count(),
        1,
        "printed once\n{}",
        peer1.report()
    );
    assert!(
        !peer2.stdout.contains(MESSAGE),
        "the function ran on peer2, not on peer1\n{peer2}"
    );
}

#[test]
fn simple_connection_peer2_needs_a_peer1_in_its_group() {
    let ports = Ports::new();
    let example = app("simple_connection");
    // Alone: nobody to call.
    run_entry(&ports, &example, "peer2", &[])
        .expect_code(1)
        .expect_stderr(&["no other peer in group None"]);
    // A peer of another group is not a peer1.
    let other = TestPeer::start(&ports, &example, &[], &[("NET_GROUP", "alpha")]);
    run_entry(&ports, &example, "peer2", &[])
        .expect_code(1)
        .expect_stderr(&["no other peer in group None"]);
    assert!(!other.stdout().contains(MESSAGE), "{}", other.report());
}
