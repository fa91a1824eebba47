//! The cluster secret between real peers: with it, calls, listings and events work and the
//! wire carries no plain text; without it, or with another, nothing is served or listed, and
//! both sides say why; the secret is never printed.

use netrun_tests::netns::TestNet;
use netrun_tests::*;
use serde_json::json;

const SECRET: &str = "open sesame 4711";

/// A file holding `SECRET` and a newline (which is not part of it).
fn secret_file(scratch: &Scratch) -> String {
    arg(&scratch.file("secret", format!("{SECRET}\n").as_bytes())).to_string()
}

fn probe(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> TestPeer {
    TestPeer::start(ports, &app("sandbox_probe"), args, env)
}

#[test]
fn with_one_secret_calls_listings_and_events_work_and_the_wire_carries_no_plain_text() {
    let scratch = Scratch::new("secret-ok");
    let file = secret_file(&scratch);
    let ports = Ports::new();
    // One peer reads the file, the other the variable: the file's newline is not the secret's.
    let hub = probe(&ports, &["--hub", "--secret-file", &file], &[]);
    let other = probe(&ports, &[], &[("NET_SECRET", SECRET)]);
    let with = ["--secret-file", file.as_str()];
    let out = call(&ports, hub.id(), "counter", &with);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1", "{out}");
    let listed = netrun(&ports, &["peers", "--json", "--secret-file", &file], &[]);
    listed.expect_code(0);
    for peer in [&hub, &other] {
        assert!(listed.json()["peers"][peer.id()].is_object(), "{listed}");
    }
    // Events: the other peer subscribes to the hub's `announce` and calls `ack` back.
    let acked = wait_until(RUN_LIMIT, || {
        let out = call(
            &ports,
            hub.id(),
            "announce_and_wait",
            &["50", "--secret-file", &file],
        );
        out.stdout.trim().parse::<u64>().is_ok_and(|acks| acks > 0)
    });
    assert!(acked, "{}\n{}", hub.report(), other.report());
    // Between two peers, through a proxy that keeps every byte: none of the call's plain text.
    let proxy = Proxy::start(&ports, 7, other.port());
    let via = Ports::id_of(proxy.port(), "None");
    let out = call(
        &ports,
        hub.id(),
        "relay",
        &[&json!([via]).to_string(), "--secret-file", &file],
    );
    out.expect_code(0);
    assert!(out.stdout.contains(other.id()), "{out}");
    let wire = proxy.seen();
    assert!(wire.len() > 100, "the call did not go through the proxy");
    for plain in [other.id(), hub.id(), "relay", "None"] {
        assert!(
            !wire.windows(plain.len()).any(|w| w == plain.as_bytes()),
            "{plain:?} crossed the wire in plain text"
        );
    }
}

#[test]
fn without_the_secret_or_with_another_nothing_is_served_or_listed() {
    let scratch = Scratch::new("secret-refused");
    let file = secret_file(&scratch);
    let wrong = arg(&scratch.file("wrong", b"not the secret")).to_string();
    let ports = Ports::new();
    let peer = probe(&ports, &["--secret-file", &file], &[]);
    let without = call(&ports, peer.id(), "counter", &[]);
    without
        .expect_code(1)
        .expect_stderr(&["authentication failed", "requires the cluster secret"]);
    let another = call(&ports, peer.id(), "counter", &["--secret-file", &wrong]);
    another
        .expect_code(1)
        .expect_stderr(&["authentication failed", "another cluster secret"]);
    let listed = netrun(&ports, &["peers", "--json"], &[]);
    assert!(listed.json()["peers"][peer.id()].is_null(), "{listed}");
    let listed = netrun(&ports, &["peers", "--json", "--secret-file", &wrong], &[]);
    assert!(listed.json()["peers"][peer.id()].is_null(), "{listed}");
    // The refusal is logged, once for this address.
    assert!(
        peer.wait_for_stderr(
            "refusing connections from 127.0.0.1: authentication failed",
            STOP_LIMIT
        ),
        "{}",
        peer.report()
    );
    assert_eq!(
        peer.stderr().matches("refusing connections").count(),
        1,
        "{}",
        peer.report()
    );
    // With the secret, it answers: none of this disturbed it.
    let out = call(&ports, peer.id(), "counter", &["--secret-file", &file]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "1", "{out}");
}

#[test]
fn peers_with_and_without_a_secret_refuse_each_other_saying_why_on_both_sides() {
    let scratch = Scratch::new("secret-mixed");
    let file = secret_file(&scratch);
    let ports = Ports::new();
    let secured = probe(&ports, &["--secret-file", &file], &[]);
    let open = probe(&ports, &[], &[]);
    // The secured peer calls the open one: refused, and both say why.
    let out = call(
        &ports,
        secured.id(),
        "relay",
        &[&json!([open.id()]).to_string(), "--secret-file", &file],
    );
    out.expect_code(1).expect_stderr(&[
        "authentication failed",
        "the caller has a cluster secret and this peer has none",
    ]);
    assert!(
        open.wait_for_stderr(
            "the caller has a cluster secret and this peer has none",
            STOP_LIMIT
        ),
        "{}",
        open.report()
    );
    // And the other way round.
    let out = call(
        &ports,
        open.id(),
        "relay",
        &[&json!([secured.id()]).to_string()],
    );
    out.expect_code(1)
        .expect_stderr(&["authentication failed", "requires the cluster secret"]);
    assert!(
        secured.wait_for_stderr("this peer requires the cluster secret", STOP_LIMIT),
        "{}",
        secured.report()
    );
    // Neither lists the other.
    let members = call(&ports, secured.id(), "members", &["--secret-file", &file]);
    assert!(!members.stdout.contains(open.id()), "{members}");
    let members = call(&ports, open.id(), "members", &[]);
    assert!(!members.stdout.contains(secured.id()), "{members}");
}

#[test]
fn the_secret_is_never_printed() {
    let ports = Ports::new();
    let env = [("NET_SECRET", SECRET), ("NET_DEV", "1")];
    let peer = probe(&ports, &[], &env);
    let mut printed = String::new();
    for args in [
        vec!["call", peer.id(), "counter"],
        vec!["call", peer.id(), "no_such_function"],
        vec!["info", peer.id()],
        vec!["peers"],
        vec!["--help"],
        vec!["run", "--help"],
        vec!["call", "--help"],
    ] {
        let out = netrun(&ports, &args, &env);
        printed.push_str(&out.stdout);
        printed.push_str(&out.stderr);
    }
    let out = netrun(
        &ports,
        &["call", peer.id(), "counter"],
        &[("NET_SECRET", "a wrong one")],
    );
    out.expect_code(1);
    printed.push_str(&out.stderr);
    printed.push_str(&peer.stdout());
    printed.push_str(&peer.stderr());
    assert!(printed.contains("counter"), "the commands ran: {printed}");
    assert!(
        !printed.contains(SECRET),
        "the secret was printed:\n{printed}"
    );
}

#[test]
fn a_peer_bound_beyond_loopback_without_a_secret_warns_unless_told_it_is_fine() {
    let mut net = TestNet::new();
    let mut lan = net.subnet();
    let host = net.host(&mut lan);
    let ports = Ports::new();
    let bare = TestPeer::start_on(
        &ports,
        &host,
        &app("sandbox_probe"),
        &["--host", "0.0.0.0"],
        &[],
    );
    assert!(
        bare.wait_for_stderr("without a cluster secret", STOP_LIMIT),
        "{}",
        bare.report()
    );
    let mut quiet = TestPeer::start_on(
        &ports,
        &host,
        &app("sandbox_probe"),
        &["--host", "0.0.0.0", "--insecure"],
        &[],
    );
    let mut secured = TestPeer::start_on(
        &ports,
        &host,
        &app("sandbox_probe"),
        &["--host", "0.0.0.0"],
        &[("NET_SECRET", SECRET)],
    );
    // Stopped, each logs that it stops, after anything it logged at start.
    for peer in [&mut quiet, &mut secured] {
        assert!(peer.terminate(STOP_LIMIT).is_some(), "{}", peer.report());
        assert!(
            peer.wait_for_stderr("stopping", STOP_LIMIT),
            "{}",
            peer.report()
        );
        assert!(
            !peer.stderr().contains("without a cluster secret"),
            "{}",
            peer.report()
        );
    }
    // On loopback, no secret is needed and nothing is said.
    let local = probe(&ports, &[], &[]);
    assert!(
        !local.stderr().contains("without a cluster secret"),
        "{}",
        local.report()
    );
}
