//! Bad input on the command line: each is exit code 2 with a message naming the problem.

use netrun_tests::{Ports, Scratch, TestPeer, netrun, wasm};

fn expect_bad_input(args: &[&str], needles: &[&str]) {
    let out = netrun(&Ports::new(), args, &[]);
    out.expect_code(2);
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} missing from stderr: {out:?}"
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    for command in ["run", "inspect"] {
        expect_bad_input(
            &[command, "/nonexistent/app.wasm"],
            &["cannot read", "/nonexistent/app.wasm"],
        );
    }
}

#[test]
fn a_file_that_is_not_wasm_is_named() {
    let scratch = Scratch::new("not-wasm");
    let path = scratch.file("notes.wasm", b"hello, I am text");
    let path = path.to_str().unwrap();
    expect_bad_input(&["run", path], &["notes.wasm", "not a WebAssembly module"]);
    expect_bad_input(&[path], &["notes.wasm", "not a WebAssembly module"]);
}

#[test]
fn a_module_built_for_another_abi_is_named() {
    let scratch = Scratch::new("abi");
    let path = scratch.file("old.wasm", &wasm::with_manifest_for_abi(99));
    expect_bad_input(
        &["inspect", path.to_str().unwrap()],
        &["old.wasm", "ABI version 99"],
    );
    expect_bad_input(
        &["run", path.to_str().unwrap()],
        &["old.wasm", "ABI version 99"],
    );
}

#[test]
fn a_module_without_a_manifest_is_named() {
    let scratch = Scratch::new("bare");
    let path = scratch.file("bare.wasm", wasm::EMPTY_MODULE);
    expect_bad_input(
        &["run", path.to_str().unwrap()],
        &["bare.wasm", "netrun manifest"],
    );
}

#[test]
fn an_unknown_entry_lists_the_entries() {
    let app = netrun_tests::app("core_probe");
    expect_bad_input(
        &["run", app.to_str().unwrap(), "--entry", "nope"],
        &["nope", "typed_parity"],
    );
}

#[test]
fn a_string_that_is_not_a_peer_id_is_refused() {
    expect_bad_input(
        &["call", "not-a-peer-id!", "pass_through", "1"],
        &["not a peer id"],
    );
    expect_bad_input(&["info", "bm90IGFuIGlk"], &["not a peer id"]);
}

#[test]
fn a_malformed_json_argument_is_refused() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let out = netrun(
        &ports,
        &["call", peer.id(), "pass_through", "{bad json"],
        &[],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("argument 1 is not valid JSON"),
        "{out:?}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    expect_bad_input(&["call"], &["PEER"]);
    expect_bad_input(&["call", "x", "f", "--timeout", "-1"], &["timeout"]);
    for command in ["run", "peers", "call", "info", "inspect"] {
        let out = netrun(&Ports::new(), &[command, "--help"], &[]);
        out.expect_code(0);
        assert!(out.stdout.contains("Usage:"), "{out:?}");
    }
}

#[test]
fn inspect_shows_functions_types_entries_and_hash_without_running_the_module() {
    let app = netrun_tests::app("core_probe");
    let out = netrun(&Ports::new(), &["inspect", app.to_str().unwrap()], &[]);
    out.expect_code(0);
    for needle in [
        "echo(message: String) -> String",
        "tagged_name(x: u32) -> u32",
        "typed_parity",
        "hash: ",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} missing: {out:?}");
    }
    let json = netrun(
        &Ports::new(),
        &["inspect", app.to_str().unwrap(), "--json"],
        &[],
    );
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["hash"].as_str().unwrap().len(), 64);
    let add = json["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "add")
        .unwrap();
    assert_eq!(
        add["params"],
        serde_json::json!([{"name": "a", "ty": "i64"}, {"name": "b", "ty": "i64"}])
    );
    assert_eq!(add["ret"], "i64");
}
