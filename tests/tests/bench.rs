//! `netrun bench`: the calls it reports are the calls the peer served, its report has the shape
//! the README gives, a long run shows progress, and a failing call, an unreachable peer or a
//! bad count end it with the error and the exit code of the other commands.

use netrun_tests::{Ports, TestPeer, app, call, netrun};

fn bench_peer(ports: &Ports) -> TestPeer {
    TestPeer::start(ports, &app("bench_probe"), &["--workers", "1"], &[])
}

#[test]
fn every_call_it_reports_reached_the_guest_with_its_argument() {
    let ports = Ports::new();
    let peer = bench_peer(&ports);
    let args = [
        "bench",
        peer.id(),
        "tally",
        "--calls",
        "50",
        "--concurrency",
        "4",
        "--size",
        "16",
        "--json",
    ];
    let out = netrun(&ports, &args, &[]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["calls"], 50, "{out}");
    assert_eq!(report["concurrency"], 4, "{out}");
    assert_eq!(report["size"], 16, "{out}");
    assert_eq!(report["function"], "tally", "{out}");
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key}: {out}"))
    };
    assert!(
        0.0 < number("p50_us") && number("p50_us") <= number("p99_us"),
        "{out}"
    );
    assert!(
        number("mean_us") > 0.0 && number("throughput") > 0.0,
        "{out}"
    );
    // The connection was made before the clock started, and timed apart.
    assert!(number("connect_us") > 0.0, "{out}");

    let tallied = call(&ports, peer.id(), "tallied", &[]);
    tallied.expect_code(0);
    assert_eq!(
        tallied.json(),
        serde_json::json!([50, 50 * 16]),
        "{tallied}"
    );
}

#[test]
fn the_text_report_names_the_load_and_a_long_run_shows_progress() {
    let ports = Ports::new();
    let peer = bench_peer(&ports);
    // 30 calls of 50 ms, one at a time: about 1.5 s, so at least one progress line.
    let out = netrun(
        &ports,
        &["bench", peer.id(), "slow_echo", "--calls", "30"],
        &[],
    );
    out.expect_code(0);
    let display = out.stdout.lines().next().unwrap_or_default().to_string();
    assert!(
        display.starts_with("slow_echo on ")
            && display.ends_with(": 30 calls, 1 at a time, 16-byte argument"),
        "{out}"
    );
    let figures = out.stdout.lines().nth(1).unwrap_or_default();
    for part in ["p50 ", "p99 ", "mean ", "calls/s"] {
        assert!(figures.contains(part), "no {part:?} in the figures\n{out}");
    }
    let connected = out.stdout.lines().nth(2).unwrap_or_default();
    assert!(
        connected.starts_with("connected in ") && connected.contains(" µs, before the first call"),
        "{out}"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.ends_with("/30 calls") || l.contains("/30 calls, ")),
        "no progress line\n{out}"
    );
}

#[test]
fn a_failing_call_an_unreachable_peer_and_a_bad_count_end_the_run() {
    let ports = Ports::new();
    let peer = bench_peer(&ports);
    // `boom` takes no argument: the first call is refused, and the run ends there.
    netrun(&ports, &["bench", peer.id(), "boom", "--calls", "5"], &[])
        .expect_code(1)
        .expect_stderr(&["call 1 of 5 to boom on peer", "bad arguments for boom"]);
    let nobody = format!("127.0.0.1:{}", ports.unused(8));
    netrun(&ports, &["bench", &nobody, "--calls", "5"], &[])
        .expect_code(1)
        .expect_stderr(&["before the first call", &nobody, "unreachable"]);
    netrun(&ports, &["bench", peer.id(), "--calls", "0"], &[])
        .expect_code(2)
        .expect_stderr(&["--calls"]);
}
