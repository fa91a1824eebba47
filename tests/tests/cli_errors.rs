//! Bad input on the command line: each is exit code 2 with a message naming the problem, and
//! none of them gets as far as serving or calling.

use netrun_tests::{CliOutput, Ports, Scratch, TestPeer, app, arg, call, netrun, wasm};

/// The ways of loading a module from the command line: `run`, the `netrun APP` shorthand, and
/// `inspect`.
fn loaders(path: &str) -> [Vec<&str>; 3] {
    [vec!["run", path], vec![path], vec!["inspect", path]]
}

/// Runs `args`, expecting exit code 2, `needles` on stderr, and no serving.
#[track_caller]
fn expect_bad_input(args: &[&str], needles: &[&str]) -> CliOutput {
    let out = netrun(&Ports::new(), args, &[]);
    out.expect_code(2).expect_stderr(needles);
    assert!(
        !out.stdout.contains(" listening on "),
        "it started serving\n{out}"
    );
    out
}

/// Panics unless `out`'s stderr says `text` exactly once: an error's cause is not repeated after
/// a message that already holds it.
#[track_caller]
fn said_once(out: &CliOutput, text: &str) {
    let times = out.stderr.matches(text).count();
    assert_eq!(times, 1, "{text:?} said {times} times\n{out}");
}

#[test]
fn a_missing_file_is_named() {
    let scratch = Scratch::new("missing");
    let path = scratch.missing("absent.wasm");
    for args in loaders(arg(&path)) {
        let out = expect_bad_input(
            &args,
            &["cannot read", "absent.wasm", "No such file or directory"],
        );
        said_once(&out, "No such file or directory");
    }
}

#[test]
fn a_file_that_is_not_wasm_is_named() {
    let scratch = Scratch::new("not-wasm");
    let path = scratch.file("notes.wasm", wasm::NOT_WASM);
    for args in loaders(arg(&path)) {
        expect_bad_input(&args, &["notes.wasm", "not a WebAssembly module"]);
    }
}

/// A module of an older ABI is told to be rebuilt; one of a newer ABI, to find its netrun.
#[test]
fn a_module_built_for_another_abi_is_named() {
    let scratch = Scratch::new("abi");
    let cases = [
        (99, "run it with the netrun its `net` crate comes with"),
        (4, "rebuild the app against the `net` crate of this netrun"),
    ];
    for (abi, advice) in cases {
        let path = scratch.file("other_abi.wasm", &wasm::with_manifest_for_abi(abi));
        for args in loaders(arg(&path)) {
            let out = expect_bad_input(
                &args,
                &["other_abi.wasm", "ABI version", &abi.to_string(), advice],
            );
            said_once(&out, advice);
        }
    }
}

#[test]
fn a_module_without_a_manifest_is_named() {
    let scratch = Scratch::new("bare");
    let path = scratch.file("bare.wasm", wasm::EMPTY_MODULE);
    for args in loaders(arg(&path)) {
        expect_bad_input(&args, &["bare.wasm", "netrun manifest"]);
    }
}

#[test]
fn an_unknown_entry_lists_the_entries() {
    let probe = app("core_probe");
    expect_bad_input(
        &["run", arg(&probe), "--entry", "no_such_entry"],
        &["no_such_entry", "typed_parity"],
    );
}

#[test]
fn a_string_that_is_not_a_peer_id_is_refused() {
    expect_bad_input(
        &["call", "not-a-peer-id!", "pass_through", "1"],
        &["not-a-peer-id!", "is not a peer id"],
    );
    // Base64, but not of "host:port -> group".
    expect_bad_input(&["info", "bm90IGFuIGlk"], &["is not a peer id"]);
}

#[test]
fn a_malformed_json_argument_is_refused_before_calling() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "pass_through", &["{bad json"])
        .expect_code(2)
        .expect_stderr(&["argument 1 is not valid JSON"]);
    call(&ports, peer.id(), "add", &["1", "[2,"])
        .expect_code(2)
        .expect_stderr(&["argument 2 is not valid JSON"]);
    // Nothing reached the peer: its state is untouched.
    let count = call(&ports, peer.id(), "counter", &[]);
    count.expect_code(0);
    assert_eq!(count.stdout.trim(), "1", "{count}");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    expect_bad_input(&["call"], &["PEER"]);
    // Anything that is not a command is an app to run: here, a file that is not there.
    expect_bad_input(&["no-such-command"], &["cannot read no-such-command"]);
    expect_bad_input(
        &["call", "eA==", "f", "--timeout", "not-a-number"],
        &["timeout"],
    );
    for command in ["run", "peers", "call", "info", "inspect"] {
        let out = netrun(&Ports::new(), &[command, "--help"], &[]);
        out.expect_code(0);
        assert!(out.stdout.contains("Usage:"), "{out}");
    }
}
