//! `--workers`: with N instances, N slow calls run at the same time, each in an instance with
//! its own state (calls from different callers, and calls one function started together), and
//! the lines they print never mix; with one, calls run one after another.
//! Measured by whether the calls' own spans (start and end, as the guest saw them) overlap, not
//! by how long they took.

use std::time::Duration;

use netrun_tests::{CliOutput, Ports, TestPeer, app, call, wait_until};

/// Far longer than it may take to start the callers, even on a busy machine: the calls
/// overlap because each waits this long, whatever the scheduler does.
const SLEEP_MS: &str = "10000";

/// `function(args…)` on `peer`, `count` times at once; what each call printed.
fn at_once(
    ports: &Ports,
    peer: &TestPeer,
    count: usize,
    calls: impl Fn(usize) -> (&'static str, Vec<String>) + Sync,
) -> Vec<CliOutput> {
    std::thread::scope(|scope| {
        let running: Vec<_> = (0..count)
            .map(|i| {
                let calls = &calls;
                scope.spawn(move || {
                    let (function, args) = calls(i);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    call(ports, peer.id(), function, &args)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|handle| {
                let out = handle.join().expect("the calling thread");
                out.expect_code(0);
                out
            })
            .collect()
    })
}

fn parse<T: serde::de::DeserializeOwned>(out: &CliOutput) -> T {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not the expected JSON ({e}): {out}"))
}

/// How long each of the calls a guest starts together sleeps: the calls are sent within
/// microseconds of each other, so with two workers they overlap by nearly all of it.
const SIBLING_SLEEP_MS: u64 = 3000;

#[test]
fn calls_one_function_starts_together_run_at_once_on_a_peer_with_workers() {
    let ports = Ports::new();
    let caller = TestPeer::start(&ports, &app("sandbox_probe"), &[], &[]);
    for (workers, overlap, counts) in [("2", true, [1, 1]), ("1", false, [1, 2])] {
        let callee = TestPeer::start(&ports, &app("sandbox_probe"), &["--workers", workers], &[]);
        let out = call(
            &ports,
            caller.id(),
            "sleep_spans_on",
            &[
                &format!("\"{}\"", callee.id()),
                "2",
                &SIBLING_SLEEP_MS.to_string(),
            ],
        );
        out.expect_code(0);
        let spans: Vec<(u64, u64, u64)> = parse(&out);
        assert_eq!(spans.len(), 2, "{out}");
        // Two calls of one chain that neither went out of: siblings, not callbacks, so a
        // second worker takes the second one rather than waiting for the first to end.
        let latest_start = spans[0].0.max(spans[1].0);
        let earliest_end = spans[0].1.min(spans[1].1);
        assert_eq!(
            latest_start < earliest_end,
            overlap,
            "--workers {workers}: spans {spans:?}\n{}",
            callee.report()
        );
        let mut seen: Vec<u64> = spans.iter().map(|s| s.2).collect();
        seen.sort();
        assert_eq!(
            seen,
            counts,
            "--workers {workers}: {spans:?}\n{}",
            callee.report()
        );
    }
}

#[test]
fn four_workers_run_four_slow_calls_at_once_each_on_its_own_state() {
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("sandbox_probe"), &["--workers", "4"], &[]);
    let spans: Vec<(u64, u64, u64)> = at_once(&ports, &peer, 4, |_| {
        ("sleep_span", vec![SLEEP_MS.to_string()])
    })
    .iter()
    .map(parse)
    .collect();
    // All four were running at one instant: the latest start comes before the earliest end.
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the calls did not all overlap: {spans:?}\n{}",
        peer.report()
    );
    // So each ran in an instance of its own, and each instance counted only its own call.
    let counts: Vec<u64> = spans.iter().map(|s| s.2).collect();
    assert_eq!(counts, [1, 1, 1, 1], "{spans:?}\n{}", peer.report());
}

#[test]
fn lines_of_parallel_workers_never_mix() {
    const LINES: usize = 40;
    const LEN: usize = 200;
    let letters = ["a", "b", "c", "d"];
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("sandbox_probe"), &["--workers", "4"], &[]);
    let before = peer.stdout_counts().lines;
    let outs = at_once(&ports, &peer, letters.len(), |i| {
        let args = vec![
            format!("{:?}", letters[i]),
            LINES.to_string(),
            LEN.to_string(),
        ];
        ("print_lines", args)
    });
    for out in &outs {
        assert_eq!(out.stdout.trim(), LINES.to_string(), "{out}");
    }
    let all = (letters.len() * LINES) as u64;
    assert!(
        wait_until(Duration::from_secs(20), || {
            peer.stdout_counts().lines >= before + all
        }),
        "the lines never all arrived\n{}",
        peer.report()
    );
    let stdout = peer.stdout();
    let printed: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.contains(" listening on "))
        .collect();
    for line in &printed {
        assert!(
            letters.iter().any(|l| *line == l.repeat(LEN)),
            "a line that is not one letter {LEN} times: {line:?}"
        );
    }
    for letter in letters {
        let whole = letter.repeat(LEN);
        let count = printed.iter().filter(|l| **l == whole).count();
        assert_eq!(count, LINES, "lines of {letter:?}");
    }
}

#[test]
fn one_worker_runs_calls_one_after_another_on_the_same_state() {
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("sandbox_probe"), &[], &[]);
    let mut spans: Vec<(u64, u64)> =
        at_once(&ports, &peer, 4, |_| ("busy_span", vec!["300".to_string()]))
            .iter()
            .map(parse)
            .collect();
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
