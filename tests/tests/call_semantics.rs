//! Call semantics between real peers on loopback: the time a call is given travels with it and
//! stops the work when it runs out, a timeout names its stage, a call is sent at most once,
//! group calls reach a live member, and a guest runs calls on several peers at once.
//!
//! Nothing here judges speed: where time matters, the test observes what could not happen
//! otherwise (a call answered while the only instance would still be busy, a counter that did
//! not move, a wall time below what calls one after another must take).

use netrun_tests::*;
use serde_json::json;

fn probe(ports: &Ports, args: &[&str]) -> TestPeer {
    TestPeer::start(ports, &app("sandbox_probe"), args, &[])
}

/// Runs `netrun call PEER FUNCTION ARGS…` on a thread of its own; join it for the output.
fn call_in_background(
    ports: &Ports,
    peer: &str,
    function: &str,
    args: &[&str],
) -> std::thread::JoinHandle<CliOutput> {
    let (ports, peer, function) = (*ports, peer.to_string(), function.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        call(&ports, &peer, &function, &args)
    })
}

#[test]
fn a_call_whose_time_runs_out_stops_the_guest_and_names_the_running_stage() {
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    let out = call(&ports, peer.id(), "spin", &["--timeout", "1"]);
    out.expect_code(1).expect_stderr(&[
        "call to spin on peer",
        "while running (the guest was stopped)",
    ]);
    // The peer's own limit is 30 s: had the guest not been stopped, its only instance would
    // still be spinning and this call would time out in the queue.
    let next = call(&ports, peer.id(), "counter", &["--timeout", "10"]);
    next.expect_code(0);
    assert!(
        peer.wait_for_stderr("spin was stopped (timed out", STOP_LIMIT),
        "{}",
        peer.report()
    );
}

#[test]
fn a_chain_of_calls_stops_everywhere_when_the_first_callers_time_runs_out() {
    let ports = Ports::new();
    let (a, b, c) = (probe(&ports, &[]), probe(&ports, &[]), probe(&ports, &[]));
    let via = json!([b.id(), c.id()]).to_string();
    // A calls B, which calls C, which spins; each call carries only what its caller has left.
    let out = call(&ports, a.id(), "spin_via", &[&via, "--timeout", "2"]);
    let c_address = format!("{HOST}:{} -> None", c.port());
    out.expect_code(1).expect_stderr(&[
        &format!("call to spin_via on peer {c_address} timed out"),
        "while running (the guest was stopped)",
    ]);
    for peer in [&a, &b, &c] {
        call(&ports, peer.id(), "counter", &["--timeout", "10"]).expect_code(0);
    }
    assert!(
        c.wait_for_stderr("spin_via was stopped (timed out", STOP_LIMIT),
        "{}",
        c.report()
    );
}

#[test]
fn a_call_whose_time_runs_out_in_the_queue_never_runs() {
    let ports = Ports::new();
    let peer = probe(&ports, &["--workers", "1"]);
    let sleeper = call_in_background(&ports, peer.id(), "sleep_announced", &["3000"]);
    assert!(
        peer.wait_for_stdout("sleep_announced 1 started", RUN_LIMIT),
        "{}",
        peer.report()
    );
    // The only worker sleeps for 3 s: this call waits in the queue until its time runs out.
    let queued = call(&ports, peer.id(), "counter", &["--timeout", "1"]);
    queued.expect_code(1).expect_stderr(&[
        "call to counter on peer",
        "while queued for a free instance (it never ran)",
    ]);
    sleeper.join().expect("the sleeper's thread").expect_code(0);
    // It never ran, also not once the worker was free: the counter starts at 1 now.
    let counted = call(&ports, peer.id(), "counter", &[]);
    counted.expect_code(0);
    assert_eq!(counted.stdout.trim(), "1", "{counted}");
}

#[test]
fn a_frozen_peer_times_out_while_connecting() {
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    {
        let _frozen = peer.freeze();
        let out = call(&ports, peer.id(), "pass_through", &["1", "--timeout", "1"]);
        out.expect_code(1)
            .expect_stderr(&["call to pass_through on peer", "while connecting"]);
    }
    let thawed = call(&ports, peer.id(), "pass_through", &["1"]);
    thawed.expect_code(0);
    assert_eq!(thawed.stdout.trim(), "1", "{thawed}");
}

#[test]
fn a_connection_lost_after_sending_is_outcome_unknown_and_the_call_is_not_sent_again() {
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    let proxy = Proxy::start(&ports, 7, peer.port());
    let caller = call_in_background(&ports, &proxy.address(), "sleep_announced", &["2000"]);
    assert!(
        peer.wait_for_stdout("sleep_announced 1 started", RUN_LIMIT),
        "{}",
        peer.report()
    );
    proxy.cut();
    let out = caller.join().expect("the caller's thread");
    out.expect_code(1).expect_stderr(&[
        "call to sleep_announced on peer",
        "outcome unknown",
        "it may or may not have run",
    ]);
    // It ran exactly once: the next run of it on that instance is its second.
    let again = call(&ports, peer.id(), "sleep_announced", &["0"]);
    again.expect_code(0);
    assert_eq!(again.stdout.trim(), "2", "{again}");
}

#[test]
fn a_group_call_reaches_a_live_member_and_skips_a_dead_one() {
    let ports = Ports::new();
    let trio = ["--group", "trio"];
    let mut members = [
        probe(&ports, &trio),
        probe(&ports, &trio),
        probe(&ports, &trio),
    ];
    let caller = probe(&ports, &[]);
    // The caller finds the three members, and keeps them in its discovery cache.
    let first = call(&ports, caller.id(), "serve_any", &[r#""trio""#, "3"]);
    first.expect_code(0);
    members[1].kill();
    let (dead, live) = (
        members[1].id().to_string(),
        [members[0].id().to_string(), members[2].id().to_string()],
    );
    // The dead member is still listed: the calls that start at it go on to the next member.
    let after = call(&ports, caller.id(), "serve_any", &[r#""trio""#, "6"]);
    after.expect_code(0);
    let served: Vec<String> = serde_json::from_str(after.stdout.trim()).expect("a JSON list");
    assert_eq!(served.len(), 6, "{after}");
    assert!(served.iter().all(|id| live.contains(id)), "{after}");
    // Calls are spread: over six calls in turn, each live member serves some.
    assert!(live.iter().all(|id| served.contains(id)), "{after}");
    // The CLI: every call succeeds, and says which live member served it.
    for _ in 0..4 {
        let out = netrun(&ports, &["call", "--group", "trio", "relay", "[]"], &[]);
        out.expect_code(0);
        let by = out
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("served by "))
            .unwrap_or_else(|| panic!("no `served by` line\n{out}"));
        assert!(live.contains(&by.to_string()) && by != dead, "{out}");
        let answered: Vec<String> = serde_json::from_str(out.stdout.trim()).expect("a JSON list");
        assert_eq!(answered, [by.to_string()], "{out}");
    }
}

#[test]
fn a_guest_runs_calls_on_several_peers_at_once() {
    let ports = Ports::new();
    let caller = probe(&ports, &[]);
    let workers = [probe(&ports, &[]), probe(&ports, &[]), probe(&ports, &[])];
    let ids: Vec<&str> = workers.iter().map(TestPeer::id).collect();
    let out = call(
        &ports,
        caller.id(),
        "busy_all",
        &[&json!(ids).to_string(), "1000"],
    );
    out.expect_code(0);
    let ms: u64 = out.stdout.trim().parse().expect("milliseconds");
    // Each call works for 1 s of wall time: one after another they take 3 s, two at a time
    // 2 s. Below that, the three ran at once.
    assert!((1000..2000).contains(&ms), "busy_all took {ms} ms\n{out}");
}

#[test]
fn a_peer_is_reached_by_host_and_port() {
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    let address = format!("{HOST}:{}", peer.port());
    let out = call(&ports, &address, "pass_through", &[r#""hi""#]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), r#""hi""#, "{out}");
    let described = netrun(&ports, &["info", &address], &[]);
    described.expect_code(0);
    assert_eq!(described.json()["tag"], peer.id(), "{described}");
    let nowhere = netrun(&ports, &["info", "nowhere"], &[]);
    nowhere
        .expect_code(2)
        .expect_stderr(&["\"nowhere\" is not a peer id: neither a peer id nor HOST:PORT"]);
}
