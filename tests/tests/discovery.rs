//! Discovery on the host, from the CLI (`netrun peers`) and from guest code (`net::peers`):
//! three core_probe peers in two groups, one of them a hub, each test in its own port block.

use std::collections::BTreeMap;
use std::io::Write;

use netrun_tests::{Input, Ports, RUN_LIMIT, TestPeer, app, netrun, run_entry};
use serde_json::{Value, json};

/// Three peers: `alpha` hub, `alpha`, `beta`.
struct Cluster {
    hub: TestPeer,
    alpha: TestPeer,
    beta: TestPeer,
}

impl Cluster {
    fn start(ports: &Ports) -> Cluster {
        let hub = TestPeer::start(
            ports,
            &app("core_probe"),
            &["--hub"],
            &[("NET_GROUP", "alpha")],
        );
        let alpha = TestPeer::probe(ports, &[("NET_GROUP", "alpha")]);
        let beta = TestPeer::probe(ports, &[("NET_GROUP", "beta")]);
        for (peer, group) in [(&hub, "alpha"), (&alpha, "alpha"), (&beta, "beta")] {
            assert_eq!(peer.host(), "127.0.0.1");
            assert_eq!(
                peer.id(),
                Ports::id_of(peer.port(), group),
                "the id of the peer on port {}",
                peer.port()
            );
        }
        Cluster { hub, alpha, beta }
    }

    fn expected_entry(peer: &TestPeer, group: &str, hub: bool) -> Value {
        json!({"host": "127.0.0.1", "port": peer.port(), "group": group, "hub": hub, "appnet": false})
    }
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// A group key's ids, sorted.
fn group_ids(listing: &Value, group: &str) -> Vec<String> {
    let mut ids: Vec<String> = listing[group]
        .as_array()
        .unwrap_or_else(|| panic!("no {group:?} key listing ids: {listing}"))
        .iter()
        .map(|v| v.as_str().expect("ids are strings").to_string())
        .collect();
    ids.sort();
    ids
}

/// `netrun peers --json ARGS…`, parsed; its `peers` map and its other keys.
fn peers_json(ports: &Ports, args: &[&str]) -> (Value, BTreeMap<String, Value>) {
    let mut all = vec!["peers", "--json"];
    all.extend_from_slice(args);
    let out = netrun(ports, &all, &[]);
    out.expect_code(0);
    let listing = out.json();
    let peers = listing["peers"]
        .as_object()
        .unwrap_or_else(|| panic!("no `peers` object\n{out}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (listing, peers)
}

fn keys(listing: &Value) -> Vec<String> {
    listing
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn peers_lists_every_peer_with_its_address_group_and_hub_flag() {
    let ports = Ports::new();
    let c = Cluster::start(&ports);
    let (listing, peers) = peers_json(&ports, &[]);
    let expected: BTreeMap<String, Value> = [
        (&c.hub, "alpha", true),
        (&c.alpha, "alpha", false),
        (&c.beta, "beta", false),
    ]
    .into_iter()
    .map(|(p, g, h)| (p.id().to_string(), Cluster::expected_entry(p, g, h)))
    .collect();
    assert_eq!(peers, expected, "{listing}");
    assert_eq!(
        group_ids(&listing, "alpha"),
        sorted(&[c.hub.id(), c.alpha.id()])
    );
    assert_eq!(group_ids(&listing, "beta"), sorted(&[c.beta.id()]));
    let mut top = keys(&listing);
    top.sort();
    assert_eq!(top, ["alpha", "beta", "peers"], "{listing}");

    // The same with --on-host spelled out, and the human table names every peer and group.
    let (_, on_host) = peers_json(&ports, &["--on-host"]);
    assert_eq!(on_host, expected);
    let table = netrun(&ports, &["peers"], &[]);
    table.expect_code(0);
    for needle in [c.hub.id(), c.alpha.id(), c.beta.id(), "alpha", "beta"] {
        assert!(table.stdout.contains(needle), "{needle} missing\n{table}");
    }
}

#[test]
fn peers_filters_by_group_and_by_hub() {
    let ports = Ports::new();
    let c = Cluster::start(&ports);

    let (listing, peers) = peers_json(&ports, &["--group", "alpha"]);
    let ids: Vec<&str> = peers.keys().map(String::as_str).collect();
    assert_eq!(ids, sorted(&[c.hub.id(), c.alpha.id()]), "{listing}");
    assert_eq!(
        group_ids(&listing, "alpha"),
        sorted(&[c.hub.id(), c.alpha.id()])
    );
    assert!(listing.get("beta").is_none(), "{listing}");

    let (listing, peers) = peers_json(&ports, &["--group", "alpha", "--group", "beta"]);
    assert_eq!(peers.len(), 3, "two groups together: {listing}");

    let (listing, peers) = peers_json(&ports, &["--hubs-only"]);
    let ids: Vec<&str> = peers.keys().map(String::as_str).collect();
    assert_eq!(ids, [c.hub.id()], "{listing}");
    assert_eq!(
        peers[c.hub.id()],
        Cluster::expected_entry(&c.hub, "alpha", true)
    );

    let (listing, peers) = peers_json(&ports, &["--group", "beta", "--hubs-only"]);
    assert!(peers.is_empty(), "beta has no hub: {listing}");

    let (listing, peers) = peers_json(&ports, &["--group", "gamma"]);
    assert!(peers.is_empty(), "nobody in gamma: {listing}");
}

#[test]
fn guest_code_discovers_the_others_but_not_itself() {
    let ports = Ports::new();
    let c = Cluster::start(&ports);
    let out = run_entry(
        &ports,
        &app("core_probe"),
        "discover",
        &[("NET_GROUP", "alpha")],
    );
    out.expect_code(0);
    let line = |name: &str| -> Vec<String> {
        let rest = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no `{name}:` line\n{out}"))
            .trim();
        if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(',').map(str::to_string).collect()
        }
    };
    assert_eq!(
        line("all"),
        sorted(&[c.hub.id(), c.alpha.id(), c.beta.id()]),
        "{out}"
    );
    assert_eq!(line("group"), sorted(&[c.hub.id(), c.alpha.id()]), "{out}");
    assert_eq!(line("hubs"), [c.hub.id()], "{out}");
}

#[test]
fn an_entry_knows_its_own_id() {
    let ports = Ports::new();
    let out = run_entry(
        &ports,
        &app("core_probe"),
        "whoami",
        &[("NET_GROUP", "gamma")],
    );
    out.expect_code(0);
    let listening = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("peer "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no listening line\n{out}"));
    let me = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("me: "))
        .unwrap_or_else(|| panic!("no `me: ` line\n{out}"));
    assert_eq!(me, listening, "{out}");
    assert_eq!(me, Ports::id_of(ports.start, "gamma"), "{out}");
}

#[test]
fn peers_with_nobody_running_is_empty() {
    let ports = Ports::new();
    let (listing, peers) = peers_json(&ports, &[]);
    assert!(peers.is_empty(), "{listing}");
    assert_eq!(keys(&listing), ["peers"], "{listing}");
}

/// `.refresh()` rescans: an entry lists the peers (filling its peer's cache), the test starts
/// another peer, and the entry's refreshed query finds it.
#[test]
fn a_refreshed_query_finds_a_peer_started_since_the_last_scan() {
    let ports = Ports::new();
    let first = TestPeer::probe(&ports, &[]);
    let mut demo = TestPeer::start_with(
        &ports,
        &app("core_probe"),
        &["--entry", "refresh_demo"],
        &[],
        Input::Piped,
    );
    let mut stdin = demo.stdin();
    let before = format!("before: {}", first.id());
    assert!(
        demo.wait_for_stdout(&before, RUN_LIMIT),
        "{before:?} missing\n{}",
        demo.report()
    );
    let second = TestPeer::probe(&ports, &[]);
    writeln!(stdin, "go on").expect("the entry reads its stdin");
    drop(stdin);
    let status = demo.wait_for_exit(RUN_LIMIT);
    assert!(status.is_some_and(|s| s.success()), "{}", demo.report());
    let refreshed = format!(
        "refreshed: {}",
        sorted(&[first.id(), second.id()]).join(",")
    );
    assert!(
        demo.wait_for_stdout(&refreshed, RUN_LIMIT),
        "{refreshed:?} missing\n{}",
        demo.report()
    );
}
