//! Peers as processes: the ported example, discovery with groups and hubs, restart and stop.

use std::time::Duration;

use netrun_tests::{Ports, TestPeer, app, netrun, run_entry};
use serde_json::Value;

#[test]
fn simple_connection_example_prints_on_the_first_peer() {
    let ports = Ports::new();
    let peer1 = TestPeer::start(&ports, &app("simple_connection"), &[], &[]);
    let peer2 = run_entry(&ports, &app("simple_connection"), "peer2", &[]);
    peer2.expect_code(0);
    assert!(
        peer1.wait_for_stdout("My Message!", Duration::from_secs(10)),
        "peer1 did not print the message: {}",
        peer1.stdout()
    );
    assert!(
        !peer2.stdout.contains("My Message!"),
        "the message ran on peer2: {peer2:?}"
    );
}

#[test]
fn simple_connection_without_a_peer_fails_clearly() {
    let ports = Ports::new();
    let out = run_entry(&ports, &app("simple_connection"), "peer2", &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("no other peer in group None"),
        "{out:?}"
    );
}

fn sorted(mut ids: Vec<String>) -> String {
    ids.sort();
    ids.join(",")
}

#[test]
fn discovery_lists_and_filters_peers_by_group_and_hub() {
    let ports = Ports::new();
    let hub = TestPeer::probe(&ports, &[("NET_GROUP", "alpha"), ("NET_IS_HUB", "yes")]);
    let alpha = TestPeer::probe(&ports, &[("NET_GROUP", "alpha")]);
    let beta = TestPeer::probe(&ports, &[("NET_GROUP", "beta")]);
    for (peer, group) in [(&hub, "alpha"), (&alpha, "alpha"), (&beta, "beta")] {
        let expected = netrun_abi::peer_id::encode("127.0.0.1", peer.port(), group);
        assert_eq!(peer.id(), expected);
    }

    let out = netrun(&ports, &["peers", "--json"], &[]);
    out.expect_code(0);
    let listing: Value = serde_json::from_str(&out.stdout).unwrap();
    let peers = listing["peers"].as_object().unwrap();
    assert_eq!(peers.len(), 3, "{listing}");
    assert_eq!(
        peers[hub.id()],
        serde_json::json!({"host": "127.0.0.1", "port": hub.port(), "group": "alpha", "hub": true})
    );
    assert_eq!(peers[beta.id()]["hub"], false);
    let mut alpha_ids: Vec<String> = listing["alpha"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    alpha_ids.sort();
    assert_eq!(
        alpha_ids.join(","),
        sorted(vec![hub.id().into(), alpha.id().into()])
    );
    assert_eq!(listing["beta"], serde_json::json!([beta.id()]));

    let group = netrun(&ports, &["peers", "--json", "--group", "beta"], &[]);
    let group: Value = serde_json::from_str(&group.stdout).unwrap();
    assert_eq!(
        group["peers"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [beta.id()]
    );
    let hubs = netrun(
        &ports,
        &["peers", "--json", "--hubs-only", "--on-host"],
        &[],
    );
    let hubs: Value = serde_json::from_str(&hubs.stdout).unwrap();
    assert_eq!(
        hubs["peers"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [hub.id()]
    );
    let table = netrun(&ports, &["peers"], &[]);
    assert!(
        table.stdout.contains(beta.id()) && table.stdout.contains("beta"),
        "{table:?}"
    );

    // From guest code, on a fourth peer of group alpha: never itself.
    let guest = run_entry(
        &ports,
        &app("core_probe"),
        "discover",
        &[("NET_GROUP", "alpha")],
    );
    guest.expect_code(0);
    let line = |name: &str| {
        guest
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} line: {guest:?}"))
            .to_string()
    };
    assert_eq!(
        line("all"),
        sorted(vec![hub.id().into(), alpha.id().into(), beta.id().into()])
    );
    assert_eq!(
        line("group"),
        sorted(vec![hub.id().into(), alpha.id().into()])
    );
    assert_eq!(line("hubs"), hub.id());
}

#[test]
fn a_restarted_peer_gets_its_port_and_id_back() {
    let ports = Ports::new();
    let mut first = TestPeer::probe(&ports, &[]);
    for _ in 0..3 {
        netrun(&ports, &["call", first.id(), "counter"], &[]).expect_code(0);
    }
    let (id, port) = (first.id().to_string(), first.port());
    let status = first.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM stops the peer cleanly: {status:?}"
    );
    let second = TestPeer::probe(&ports, &[]);
    assert_eq!((second.id(), second.port()), (id.as_str(), port));
    netrun(&ports, &["call", second.id(), "counter"], &[]).expect_code(0);
}

#[test]
fn sigterm_stops_a_peer_with_exit_code_0() {
    let ports = Ports::new();
    let mut peer = TestPeer::probe(&ports, &[]);
    let status = peer.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "{status:?}\n{}",
        peer.stderr()
    );
}

#[test]
fn a_peer_binds_the_next_free_port_of_its_range() {
    let ports = Ports::new();
    let first = TestPeer::probe(&ports, &[]);
    let second = TestPeer::probe(&ports, &[]);
    assert_eq!(first.port(), ports.start);
    assert_eq!(second.port(), ports.start + 1);
}
