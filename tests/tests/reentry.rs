//! Re-entrant calls, against `sandbox_probe`'s `relay`: a function that calls a peer that calls
//! it back, calls itself through its own id, or goes round a cycle of peers completes, with one
//! instance per peer (which would deadlock if it served one call at a time) and with several.

use std::time::Duration;

use netrun_tests::{CliOutput, Ports, TestPeer, app, call, subscription_list, wait_for_info};

/// How long a subscriber may take to register with a hub (it rescans every 2 s).
const REGISTER_LIMIT: Duration = Duration::from_secs(20);

fn probe(ports: &Ports, args: &[&str]) -> TestPeer {
    TestPeer::start(ports, &app("sandbox_probe"), args, &[])
}

/// `relay` on `first` through `peers`: the ids it answers, innermost first.
#[track_caller]
fn relay(ports: &Ports, first: &TestPeer, peers: &[&TestPeer]) -> Vec<String> {
    let list: Vec<&str> = peers.iter().map(|p| p.id()).collect();
    let out = relay_out(ports, first, &list);
    out.expect_code(0);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("not a list ({e}): {out}"))
}

fn relay_out(ports: &Ports, first: &TestPeer, ids: &[&str]) -> CliOutput {
    let list = serde_json::to_string(ids).expect("ids are strings");
    call(ports, first.id(), "relay", &[&list])
}

/// The ids of `peers`, in order, as `relay` answers them when the chain goes `peers[0]` →
/// `peers[1]` → …: innermost (last) first.
fn expected(path: &[&TestPeer]) -> Vec<String> {
    path.iter().rev().map(|p| p.id().to_string()).collect()
}

#[test]
fn callbacks_self_calls_and_cycles_complete_with_one_worker_and_with_several() {
    for workers in ["1", "3"] {
        let ports = Ports::new();
        let a = probe(&ports, &["--workers", workers]);
        let b = probe(&ports, &["--workers", workers]);
        let c = probe(&ports, &["--workers", workers]);
        // A → B → A.
        assert_eq!(relay(&ports, &a, &[&b, &a]), expected(&[&a, &b, &a]));
        // A → A, through its own id.
        assert_eq!(relay(&ports, &a, &[&a]), expected(&[&a, &a]));
        // A → B → C → A.
        assert_eq!(
            relay(&ports, &a, &[&b, &c, &a]),
            expected(&[&a, &b, &c, &a])
        );
        // A → B → A → B → A: two calls nested in each waiting instance.
        assert_eq!(
            relay(&ports, &a, &[&b, &a, &b, &a]),
            expected(&[&a, &b, &a, &b, &a])
        );
        // The instances were not replaced: none trapped.
        for peer in [&a, &b, &c] {
            assert!(
                !peer.stderr().contains("replacing the instance"),
                "{}",
                peer.report()
            );
        }
    }
}

#[test]
fn a_trap_in_a_nested_call_fails_the_chain_and_the_peers_go_on() {
    let ports = Ports::new();
    let a = probe(&ports, &[]);
    let b = probe(&ports, &[]);
    // A → B → A, where the nested relay on A is given an id that is not one and panics.
    let out = relay_out(&ports, &a, &[b.id(), a.id(), "not-a-peer-id"]);
    out.expect_code(1).expect_stderr(&["relay failed", "panic"]);
    // The nested call's trap ended the outer call on A (its instance was replaced) and the
    // failure came back through B.
    assert!(
        a.wait_for_stderr("replacing the instance", Duration::from_secs(5)),
        "{}",
        a.report()
    );
    // Both answer again, including re-entrant chains.
    assert_eq!(relay(&ports, &a, &[&b, &a]), expected(&[&a, &b, &a]));
}

#[test]
fn a_subscriber_calling_back_the_hub_is_served_while_the_hub_waits() {
    let ports = Ports::new();
    let hub = probe(&ports, &["--hub"]);
    let subscriber = probe(&ports, &[]);
    let (met, info) = wait_for_info(&ports, hub.id(), REGISTER_LIMIT, |info| {
        subscription_list(info, "subscribers")
            .iter()
            .any(|(event, peer, _)| event == "announce" && peer == subscriber.id())
    });
    assert!(
        met,
        "the subscriber never registered: {info}\n{}",
        subscriber.report()
    );
    // The hub announces, then waits on calls to itself for the subscriber's `ack`: the ack is
    // part of the hub's call chain, so the waiting instance runs it.
    let out = call(&ports, hub.id(), "announce_and_wait", &["250"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout.trim(),
        "1",
        "the ack did not get through while the hub waited\n{out}\n{}\n{}",
        hub.report(),
        subscriber.report()
    );
}

#[test]
fn a_callback_nested_in_an_entry_has_a_deadline() {
    let ports = Ports::new();
    let _other = probe(&ports, &[]);
    let out = netrun_tests::netrun(
        &ports,
        &[
            "run",
            netrun_tests::arg(&app("sandbox_probe")),
            "--entry",
            "spin_callback",
            "--deadline",
            "1",
        ],
        &[],
    );
    out.expect_code(1)
        .expect_stderr(&["entry spin_callback failed", "deadline of 1 s exceeded"]);
}
