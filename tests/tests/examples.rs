//! The original app-net examples, ported. `simple_connection`: peer1 serves the app, peer2 runs
//! the entry `peer2`, which finds peer1 and calls `connected_function("My Message!")` there, so
//! the message is printed by peer1 (also as `make run` does it). `simple_tagged_connection`:
//! two versions of an app called by tag, and a call whose types differ refused.

use std::time::Duration;

use netrun_tests::{Input, Ports, Scratch, TestPeer, app, arg, call, make, run_entry};

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

/// The original's `simple_tagged_connection`: `peer3` (app v2) calls the tagged function on a
/// v1 peer and on a v2 peer, and gets each version's answer.
#[test]
fn simple_tagged_connection_v2_calls_v1_and_v2_by_tag() {
    let ports = Ports::new();
    let _peer1 = TestPeer::start(&ports, &app("app_v1"), &[], &[("NET_GROUP", "app_v1")]);
    let _peer2 = TestPeer::start(&ports, &app("app_v2"), &[], &[("NET_GROUP", "app_v2")]);
    let peer3 = run_entry(&ports, &app("app_v2"), "peer3", &[("NET_GROUP", "app_v2")]);
    peer3.expect_code(0);
    let answers: Vec<&str> = peer3
        .stdout
        .lines()
        .filter(|l| l.starts_with(MESSAGE))
        .collect();
    assert_eq!(
        answers,
        ["My Message! Version 1", "My Message! Version 2"],
        "{peer3}"
    );
}

/// A function under the same tag with other types is refused by the callee, naming the
/// function and both signatures, never decoded into garbage.
#[test]
fn a_tagged_call_with_other_types_is_a_contract_mismatch() {
    let ports = Ports::new();
    let v1 = TestPeer::start(&ports, &app("app_v1"), &[], &[("NET_GROUP", "app_v1")]);
    let demo = run_entry(&ports, &app("events_probe"), "mismatch_demo", &[]);
    demo.expect_code(0);
    for needle in [
        "contract mismatch",
        "myTaggedFunction",
        "(u32) -> u32",
        "(String) -> String",
    ] {
        assert!(demo.stdout.contains(needle), "{needle:?} missing\n{demo}");
    }
    // v1 still serves its own types. (Whether its guest ran for the refused call is not
    // visible from outside: its function neither prints nor traps on any argument.)
    let own = call(&ports, v1.id(), "myTaggedFunction", &[r#""mine""#]);
    own.expect_code(0);
    assert_eq!(own.stdout.trim(), r#""mine Version 1""#, "{own}");
}

/// `make run` itself, as the README says: it builds (nothing to do after `make build`), starts
/// peer1, runs peer2's entry, and peer1 prints the message. Its peers bind this test's ports
/// (`NET_*` reach them through the environment), and it copies the apps to a scratch directory
/// (`APP_DIR`), not over the ones other tests are reading.
#[test]
fn make_run_runs_the_example() {
    let ports = Ports::new();
    let scratch = Scratch::new("make-run");
    let app_dir = format!("APP_DIR={}", arg(scratch.path()));
    let out = make(&ports, &["--no-print-directory", "run", &app_dir]);
    out.expect_code(0);
    let peer1 = Ports::id_of(ports.start, "None");
    assert!(
        out.stdout
            .contains(&format!("peer1: peer {peer1} listening on")),
        "{out}"
    );
    let after = out
        .stdout
        .split_once("--- peer1's output:")
        .map(|(_, after)| after)
        .unwrap_or_else(|| panic!("no peer1 output\n{out}"));
    assert!(after.lines().any(|l| l == MESSAGE), "{out}");
}
