//! Calls between real peers on loopback: the original's round-trip cases, typed stubs, state,
//! payload size, and every way a call can fail.

use std::time::{Duration, Instant};

use netrun_tests::{Ports, TestPeer, app, netrun, run_entry};
use serde_json::Value;

/// The original app-net test's values, each through `pass_through` on a remote peer.
const PARITY_VALUES: [&str; 11] = [
    r#"{"testing": "value"}"#,
    r#"{"1": 1}"#,
    r#"{"1": {"2": 3}}"#,
    r#"[1, "1", 1.0]"#,
    r#""This is a string""#,
    r#""""#,
    "null",
    "true",
    "false",
    "1.0",
    "1",
];

#[test]
fn pass_through_returns_every_parity_value_unchanged() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    for raw in PARITY_VALUES {
        let out = netrun(&ports, &["call", peer.id(), "pass_through", raw], &[]);
        out.expect_code(0);
        let sent: Value = serde_json::from_str(raw).unwrap();
        let got: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{raw}: not JSON back ({e}): {out:?}"));
        assert_eq!(got, sent, "pass_through changed {raw}");
        // 1.0 stays a float and 1 an integer, as in the original.
        assert_eq!(got.is_f64(), sent.is_f64(), "{raw} came back as {got}");
    }
}

#[test]
fn typed_stubs_and_pass_through_agree_with_local_calls() {
    let ports = Ports::new();
    let _server = TestPeer::probe(&ports, &[]);
    let out = run_entry(&ports, &app("core_probe"), "typed_parity", &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("typed parity ok: 11 values"), "{out:?}");
}

#[test]
fn connected_functions_answer_json_calls_and_keep_state() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let call = |args: &[&str]| {
        let mut all = vec!["call", peer.id()];
        all.extend_from_slice(args);
        let out = netrun(&ports, &all, &[]);
        out.expect_code(0);
        out.stdout.trim().to_string()
    };
    assert_eq!(call(&["echo", r#""hi""#]), r#""hi""#);
    assert_eq!(call(&["add", "2", "-3"]), "-1");
    assert_eq!(call(&["tagged_name", "41"]), "42");
    assert_eq!(call(&["null"]), r#""NULL""#);
    let counts: Vec<String> = (0..3).map(|_| call(&["counter"])).collect();
    assert_eq!(counts, ["1", "2", "3"], "state persists across calls");
    let connections: Vec<String> = serde_json::from_str(&call(&["connections"])).unwrap();
    for name in [
        "echo",
        "tagged_name",
        "info",
        "pass_through",
        "null",
        "connections",
    ] {
        assert!(
            connections.iter().any(|c| c == name),
            "{name} missing from {connections:?}"
        );
    }
    assert!(
        !connections.iter().any(|c| c == "tagged"),
        "a tagged function is known by its tag"
    );
}

#[test]
fn eight_mib_arguments_and_results_arrive_intact() {
    let ports = Ports::new();
    let _server = TestPeer::probe(&ports, &[]);
    let out = run_entry(&ports, &app("core_probe"), "big_payload", &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("8 MiB round trip ok"), "{out:?}");
}

#[test]
fn a_remote_panic_comes_back_with_its_message_and_the_peer_keeps_serving() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    assert_eq!(
        netrun(&ports, &["call", peer.id(), "counter"], &[])
            .stdout
            .trim(),
        "1"
    );
    let out = netrun(
        &ports,
        &["call", peer.id(), "panic_with", r#""cli boom""#],
        &[],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("cli boom") && out.stderr.contains("panic"),
        "{out:?}"
    );
    // From guest code too.
    let entry = run_entry(&ports, &app("core_probe"), "remote_errors", &[]);
    entry.expect_code(0);
    assert!(
        entry.stdout.contains("panic: ") && entry.stdout.contains("remote boom"),
        "{entry:?}"
    );
    // Still serving, with a fresh instance: the counter starts again.
    let after = netrun(&ports, &["call", peer.id(), "counter"], &[]);
    after.expect_code(0);
    assert_eq!(
        after.stdout.trim(),
        "1",
        "the trapped instance was replaced"
    );
    assert!(
        peer.stderr().contains("state was reset"),
        "the log says so: {}",
        peer.stderr()
    );
}

#[test]
fn a_missing_function_lists_what_the_peer_offers() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let out = netrun(&ports, &["call", peer.id(), "no_such_function"], &[]);
    out.expect_code(1);
    for word in [
        "INVALID_CONNECTION",
        "no_such_function",
        "pass_through",
        "echo",
    ] {
        assert!(out.stderr.contains(word), "{word} missing: {out:?}");
    }
    let entry = run_entry(&ports, &app("core_probe"), "remote_errors", &[]);
    assert!(
        entry.stdout.contains("missing: ") && entry.stdout.contains("INVALID_CONNECTION"),
        "{entry:?}"
    );
}

#[test]
fn bad_arguments_name_the_expected_types() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let out = netrun(&ports, &["call", peer.id(), "add", r#""two""#, "3"], &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("bad arguments for add") && out.stderr.contains("(i64, i64)"),
        "{out:?}"
    );
}

#[test]
fn a_dead_peer_is_unreachable_well_within_the_timeout() {
    let ports = Ports::new();
    let dead = ports.id(PEER_OFFSET_NOBODY_USES, "None");
    let started = Instant::now();
    let out = netrun(
        &ports,
        &["call", &dead, "pass_through", "1", "--timeout", "5"],
        &[],
    );
    out.expect_code(1);
    assert!(out.stderr.contains("unreachable"), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// A port of the block that no peer of the test binds.
const PEER_OFFSET_NOBODY_USES: u16 = 7;

#[test]
fn a_peer_that_stops_answering_times_out_instead_of_hanging() {
    // A listener that accepts and never answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let id = netrun_abi::peer_id::encode("127.0.0.1", port, "None");
    let ports = Ports::new();
    let out = netrun(
        &ports,
        &["call", &id, "pass_through", "1", "--timeout", "1"],
        &[],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("timed out") || out.stderr.contains("no answer"),
        "{out:?}"
    );
}

#[test]
fn a_failing_entry_exits_1_with_its_message() {
    let ports = Ports::new();
    let out = run_entry(&ports, &app("core_probe"), "fail", &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("entry failed on purpose"), "{out:?}");
}

#[test]
fn info_describes_the_peer() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[("NET_GROUP", "alpha"), ("NET_IS_HUB", "1")]);
    let out = netrun(&ports, &["info", peer.id()], &[]);
    out.expect_code(0);
    let info: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(info["tag"], peer.id());
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], peer.port());
    assert_eq!(info["group"], "alpha");
    assert_eq!(info["hub"], true);
    assert_eq!(info["module_hash"].as_str().unwrap().len(), 64);
    assert!(
        info["connections"]
            .as_array()
            .unwrap()
            .contains(&Value::from("counter"))
    );
    assert_eq!(
        info["flags"],
        serde_json::json!(["INVALID_CONNECTION", "NULL"])
    );
    assert!(info["runtime_version"].is_string() && info["subscriptions"].is_array());
}
