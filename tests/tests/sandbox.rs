//! Limits, traps and the sandbox, against the hostile app `sandbox_probe`: each misbehaving
//! call fails with an error naming what stopped it, the instance is replaced (its state starts
//! again), and the same peer answers the next call.

use std::io::Write;
use std::time::Duration;

use netrun_tests::{CliOutput, Input, Ports, Scratch, TestPeer, app, arg, call, netrun, wasm};

/// Far above any limit set here: a hang would show as a failure, not as a slow test.
const BOUND: Duration = Duration::from_secs(20);

fn probe(ports: &Ports, limits: &[&str]) -> TestPeer {
    TestPeer::start(ports, &app("sandbox_probe"), limits, &[])
}

#[track_caller]
fn fails_with(out: &CliOutput, needles: &[&str]) {
    out.expect_code(1).expect_stderr(needles);
    assert!(out.elapsed < BOUND, "took {:?}\n{out}", out.elapsed);
}

#[track_caller]
fn counter_is(ports: &Ports, peer: &TestPeer, expected: u64) {
    let out = call(ports, peer.id(), "counter", &[]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), expected.to_string(), "{out}");
}

#[test]
fn each_limit_and_trap_fails_only_its_call_and_resets_the_instance() {
    let ports = Ports::new();
    let peer = probe(&ports, &["--deadline", "1", "--max-memory", "32"]);
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "spin",
            &[],
            &["spin failed", "deadline: deadline of 1 s exceeded"],
        ),
        (
            "alloc_forever",
            &[],
            &["memory limit: memory limit of 32 MiB exceeded"],
        ),
        (
            "recurse_forever",
            &[],
            &["recurse_forever failed", "stack overflow"],
        ),
        (
            "panic_with",
            &["\"the guest's own words\""],
            &["panic: the guest's own words at apps/sandbox_probe/src/lib.rs"],
        ),
    ];
    for (function, args, needles) in cases {
        // State persists across calls…
        counter_is(&ports, &peer, 1);
        counter_is(&ports, &peer, 2);
        fails_with(&call(&ports, peer.id(), function, args), needles);
        // …and a trap replaces the instance: the next call succeeds, on fresh state.
        counter_is(&ports, &peer, 1);
        // Back to zero for the next case.
        fails_with(
            &call(&ports, peer.id(), "panic_with", &["\"reset\""]),
            &["reset"],
        );
    }
    assert!(
        peer.stderr()
            .contains("replacing the instance: its state was reset"),
        "{}",
        peer.report()
    );
}

/// A module not built with the SDK that breaks the hand-over of arguments and outcomes (guest
/// ABI 5): each call fails naming what the guest did wrong, and the peer answers the next.
#[test]
fn a_guest_that_breaks_the_handover_fails_its_call_with_the_reason() {
    let ports = Ports::new();
    let scratch = Scratch::new("handover");
    let path = scratch.file("handover.wasm", &wasm::breaking_the_handover());
    let peer = TestPeer::start(&ports, &path, &[], &[]);
    let cases: [(&str, &[&str]); 3] = [
        (
            "silent",
            &[
                "silent failed",
                "without handing its outcome over (net.output)",
            ],
        ),
        (
            "greedy",
            &["net.input: the guest asked for 3 bytes, but the host holds 2"],
        ),
        ("garbled", &["the guest handed over an unreadable outcome"]),
    ];
    for _ in 0..2 {
        for (function, needles) in cases {
            fails_with(&call(&ports, peer.id(), function, &[]), needles);
        }
    }
}

#[test]
fn fuel_stops_a_loop() {
    let ports = Ports::new();
    let peer = probe(&ports, &["--fuel", "50000000"]);
    fails_with(
        &call(&ports, peer.id(), "spin", &[]),
        &["fuel: fuel limit of 50000000 exhausted"],
    );
    let out = call(&ports, peer.id(), "busy", &["1"]);
    out.expect_code(0);
}

#[test]
fn the_guest_sees_no_files_no_environment_and_cannot_write() {
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    let read = call(&ports, peer.id(), "read_file", &["\"/etc/hostname\""]);
    read.expect_code(0);
    assert!(read.stdout.starts_with("\"error: "), "{read}");
    for name in ["\"HOME\"", "\"PATH\"", "\"NET_PORT\""] {
        let env = call(&ports, peer.id(), "read_env", &[name]);
        env.expect_code(0);
        assert_eq!(env.stdout.trim(), "null", "{env}");
    }
    // A path of the test's own on the host (removed with the scratch directory): the guest,
    // which sees no file system, cannot create it.
    let scratch = Scratch::new("escape");
    let escape_path = scratch.missing("escaped.txt");
    let escape = arg(&escape_path);
    fails_with(
        &call(
            &ports,
            peer.id(),
            "write_file",
            &[&format!("{escape:?}"), "\"x\""],
        ),
        &[&format!("cannot write {escape}")],
    );
    assert!(!escape_path.exists());
}

#[test]
fn relay_runs_through_another_peer_and_back() {
    let ports = Ports::new();
    let a = probe(&ports, &[]);
    let b = probe(&ports, &[]);
    let out = call(&ports, a.id(), "relay", &[&format!("[\"{}\"]", b.id())]);
    out.expect_code(0);
    let ids: Vec<String> = serde_json::from_str(out.stdout.trim()).expect("a JSON list");
    assert_eq!(ids, [b.id(), a.id()], "{out}");
}

#[test]
fn dir_and_env_grants_show_exactly_what_was_granted() {
    let ports = Ports::new();
    let scratch = Scratch::new("grants");
    let note = scratch.file("note.txt", b"granted");
    let host = note.parent().expect("in the scratch directory");
    let read_only = format!("{}:/data", arg(host));
    let peer = probe(&ports, &["--dir", &read_only, "--env", "GREETING=hi there"]);
    let read = call(&ports, peer.id(), "read_file", &["\"/data/note.txt\""]);
    read.expect_code(0);
    assert_eq!(read.stdout.trim(), "\"granted\"", "{read}");
    let env = call(&ports, peer.id(), "read_env", &["\"GREETING\""]);
    assert_eq!(env.stdout.trim(), "\"hi there\"", "{env}");
    let path = call(&ports, peer.id(), "read_env", &["\"PATH\""]);
    assert_eq!(path.stdout.trim(), "null", "{path}");
    let outside = call(&ports, peer.id(), "read_file", &["\"/etc/hostname\""]);
    assert!(outside.stdout.starts_with("\"error: "), "{outside}");
    fails_with(
        &call(
            &ports,
            peer.id(),
            "write_file",
            &["\"/data/new.txt\"", "\"x\""],
        ),
        &["cannot write /data/new.txt"],
    );
    assert!(!host.join("new.txt").exists());

    let writable = format!("{}:/data:rw", arg(host));
    let peer = probe(&ports, &["--dir", &writable]);
    call(
        &ports,
        peer.id(),
        "write_file",
        &["\"/data/new.txt\"", "\"written\""],
    )
    .expect_code(0);
    assert_eq!(
        std::fs::read_to_string(host.join("new.txt")).unwrap(),
        "written"
    );
    // A grant that cannot be honoured is bad input, before anything starts.
    netrun(
        &ports,
        &[
            "run",
            arg(&app("sandbox_probe")),
            "--dir",
            "/no/such/dir:/data",
        ],
        &[],
    )
    .expect_code(2)
    .expect_stderr(&["/no/such/dir: not a directory"]);
    netrun(
        &ports,
        &[
            "run",
            arg(&app("sandbox_probe")),
            "--env",
            "NETRUN_UNSET_FOR_TEST",
        ],
        &[],
    )
    .expect_code(2)
    .expect_stderr(&["NETRUN_UNSET_FOR_TEST is not set"]);
}

#[test]
fn a_flood_of_output_reaches_the_peers_stdout_whole_without_filling_its_memory() {
    const LINES: u64 = 100 * 1024;
    const LINE: u64 = 1024;
    let ports = Ports::new();
    let peer = probe(&ports, &[]);
    call(&ports, peer.id(), "busy", &["1"]).expect_code(0);
    let before = peer.stdout_counts();
    let baseline = peer.peak_memory_kib();
    let out = call(&ports, peer.id(), "print_flood", &[]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), LINES.to_string(), "{out}");
    let arrived =
        netrun_tests::wait_until(BOUND, || peer.stdout_counts().lines >= before.lines + LINES);
    let after = peer.stdout_counts();
    assert!(
        arrived,
        "only {after:?} of the flood arrived (before: {before:?})"
    );
    // Every line arrived whole: as many lines and bytes as the guest printed, no more.
    assert_eq!(after.lines - before.lines, LINES);
    assert_eq!(after.bytes - before.bytes, LINES * LINE);
    // The peer passed 100 MiB through without holding it.
    let grown = peer.peak_memory_kib().saturating_sub(baseline);
    assert!(
        grown < 32 * 1024,
        "the peer's peak memory grew by {grown} KiB while the guest printed 100 MiB"
    );
    call(&ports, peer.id(), "counter", &[]).expect_code(0);
}

/// `--env NAME` (no value) passes the variable as netrun has it, and only that one.
#[test]
fn env_by_name_passes_netruns_own_value() {
    let ports = Ports::new();
    let peer = TestPeer::start(
        &ports,
        &app("sandbox_probe"),
        &["--env", "NETRUN_TEST_INHERITED"],
        &[("NETRUN_TEST_INHERITED", "from netrun's environment")],
    );
    let env = call(
        &ports,
        peer.id(),
        "read_env",
        &["\"NETRUN_TEST_INHERITED\""],
    );
    env.expect_code(0);
    assert_eq!(env.stdout.trim(), "\"from netrun's environment\"", "{env}");
    let path = call(&ports, peer.id(), "read_env", &["\"PATH\""]);
    path.expect_code(0);
    assert_eq!(path.stdout.trim(), "null", "{path}");
}

/// A peer started without `--entry` gives its guest no stdin: a line waiting on the process's
/// stdin is not what the guest reads; it reads end of input.
#[test]
fn a_peer_without_an_entry_gives_its_guest_no_stdin() {
    let ports = Ports::new();
    let mut peer = TestPeer::start_with(&ports, &app("sandbox_probe"), &[], &[], Input::Piped);
    let mut stdin = peer.stdin();
    writeln!(stdin, "meant for nobody").expect("the pipe is open");
    stdin.flush().expect("the pipe is open");
    let out = call(&ports, peer.id(), "read_stdin_line", &[]);
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "\"\"", "{out}");
    drop(stdin);
}
