//! `--workers`: with N instances, N slow calls run at the same time; with one, one after
//! another. Measured by whether the calls' own spans (start and end, as the guest saw them)
//! overlap, not by how long they took.

use netrun_tests::{Ports, TestPeer, app, call};

/// `busy_span(ms)` on `peer`, `count` times at once; the spans (start, end) in µs.
fn spans(ports: &Ports, peer: &TestPeer, count: usize, ms: u64) -> Vec<(u64, u64)> {
    let ms = ms.to_string();
    std::thread::scope(|scope| {
        let calls: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| call(ports, peer.id(), "busy_span", &[&ms])))
            .collect();
        calls
            .into_iter()
            .map(|handle| {
                let out = handle.join().expect("the calling thread");
                out.expect_code(0);
                serde_json::from_str(out.stdout.trim())
                    .unwrap_or_else(|e| panic!("not a [start, end] pair ({e}): {out}"))
            })
            .collect()
    })
}

#[test]
fn four_workers_run_four_slow_calls_at_once() {
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("sandbox_probe"), &["--workers", "4"], &[]);
    let spans = spans(&ports, &peer, 4, 2000);
    // All four were running at one instant: the latest start comes before the earliest end.
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the calls did not all overlap: {spans:?}\n{}",
        peer.report()
    );
}

#[test]
fn one_worker_runs_calls_one_after_another_on_the_same_state() {
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("sandbox_probe"), &[], &[]);
    let mut spans = spans(&ports, &peer, 4, 300);
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two calls overlapped with one worker: {spans:?}\n{}",
            peer.report()
        );
    }
    // One instance: the state of each call is the one the previous left.
    for expected in 1..=3 {
        let out = call(&ports, peer.id(), "counter", &[]);
        out.expect_code(0);
        assert_eq!(out.stdout.trim(), expected.to_string(), "{out}");
    }
}
