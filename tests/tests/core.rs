//! Calls that succeed, between real peers on loopback: the original's round-trip values, typed
//! calls through the CLI's JSON bridge, guest state, the built-in connections, the SDK's peer
//! API and log from guest code, 8 MiB payloads, `inspect`, and the printing commands' output
//! when its reader has gone.

use netrun_tests::{
    Output, Ports, Scratch, Stream, TestPeer, app, arg, call, netrun, netrun_writing_to, run_entry,
    wasm,
};
use serde_json::{Value, json};

/// The original app-net test's values, each through `pass_through` on a remote peer.
const PARITY_VALUES: [&str; 11] = [
    r#"{"testing": "value"}"#,
    r#"{"1": 1}"#,
    r#"{"1": {"2": 3}}"#,
    r#"[1, "1", 1.0]"#,
    r#""This is a string""#,
    r#""""#,
    "null",
    "true",
    "false",
    "1.0",
    "1",
];

/// What every core_probe peer answers: its connected functions and the built-ins.
const PROBE_FUNCTIONS: [&str; 8] = [
    "add",
    "counter",
    "echo",
    "echo_bytes",
    "make_bytes",
    "panic_with",
    "swap_parcel",
    "tagged_name",
];
const BUILTINS: [&str; 4] = ["connections", "info", "null", "pass_through"];

#[test]
fn pass_through_returns_every_parity_value_unchanged() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    for raw in PARITY_VALUES {
        let out = call(&ports, peer.id(), "pass_through", &[raw]);
        out.expect_code(0);
        let sent: Value = serde_json::from_str(raw).expect("the test's values are JSON");
        // serde_json keeps 1 and 1.0 apart, so this also checks an integer stays an integer.
        assert_eq!(out.json(), sent, "pass_through changed {raw}\n{out}");
    }
}

#[test]
fn typed_stubs_and_pass_through_agree_with_local_calls() {
    let ports = Ports::new();
    let group = [("NET_GROUP", "parity")];
    let _server = TestPeer::probe(&ports, &group);
    let out = run_entry(&ports, &app("core_probe"), "typed_parity", &group);
    out.expect_code(0);
    assert!(out.stdout.contains("typed parity ok: 11 values"), "{out}");
}

#[test]
fn connected_functions_answer_json_calls_and_keep_state() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let result = |function: &str, args: &[&str]| {
        let out = call(&ports, peer.id(), function, args);
        out.expect_code(0);
        assert!(out.stdout.ends_with('\n'), "one line of JSON\n{out}");
        out.stdout.trim_end().to_string()
    };
    assert_eq!(result("echo", &[r#""hi""#]), r#""hi""#);
    assert_eq!(result("add", &["2", "3"]), "5");
    assert_eq!(result("add", &["2", "-3"]), "-1");
    assert_eq!(result("tagged_name", &["41"]), "42");
    assert_eq!(result("null", &[]), r#""NULL""#);
    let counts: Vec<String> = (0..3).map(|_| result("counter", &[])).collect();
    assert_eq!(counts, ["1", "2", "3"], "guest state persists across calls");
    // The JSON printed is compact.
    assert_eq!(
        result("pass_through", &[r#"{ "a" : [1, 2] }"#]),
        r#"{"a":[1,2]}"#
    );
}

#[test]
fn a_tagged_function_is_known_by_its_tag_only() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    call(&ports, peer.id(), "tagged", &["41"])
        .expect_code(1)
        .expect_stderr(&["INVALID_CONNECTION"]);
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_string()
        })
        .collect()
}

fn expected_connections() -> Vec<String> {
    let mut all: Vec<String> = PROBE_FUNCTIONS
        .iter()
        .chain(BUILTINS.iter())
        .map(|s| s.to_string())
        .collect();
    all.sort();
    all
}

#[test]
fn connections_lists_every_function_and_builtin_sorted() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let out = call(&ports, peer.id(), "connections", &[]);
    out.expect_code(0);
    let connections = strings(&out.json());
    let mut sorted = connections.clone();
    sorted.sort();
    assert_eq!(connections, sorted, "connections are sorted");
    for name in expected_connections() {
        assert!(
            connections.contains(&name),
            "{name} missing: {connections:?}"
        );
    }
    assert!(
        !connections.iter().any(|c| c == "tagged"),
        "a tagged function is listed by its tag: {connections:?}"
    );
}

#[test]
fn info_describes_the_peer_through_the_cli_and_as_a_call() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[("NET_GROUP", "alpha"), ("NET_IS_HUB", "1")]);
    assert_eq!(peer.id(), Ports::id_of(peer.port(), "alpha"));

    let out = netrun(&ports, &["info", peer.id()], &[]);
    out.expect_code(0);
    let info = out.json();
    assert_eq!(info["tag"], peer.id(), "{info}");
    assert_eq!(info["host"], "127.0.0.1", "{info}");
    assert_eq!(info["port"], peer.port(), "{info}");
    assert_eq!(info["group"], "alpha", "{info}");
    assert_eq!(info["hub"], true, "{info}");
    let connections = strings(&info["connections"]);
    for name in expected_connections() {
        assert!(connections.contains(&name), "{name} missing: {info}");
    }
    let flags = strings(&info["flags"]);
    for flag in ["INVALID_CONNECTION", "NULL"] {
        assert!(flags.iter().any(|f| f == flag), "{flag} missing: {info}");
    }
    assert!(info["subscriptions"].is_array(), "{info}");
    assert!(
        info["runtime_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{info}"
    );

    // The module hash is the one `inspect` computes from the file.
    let inspect = netrun(&ports, &["inspect", arg(&app("core_probe")), "--json"], &[]);
    inspect.expect_code(0);
    assert_eq!(info["module_hash"], inspect.json()["hash"], "{info}");

    // The built-in `info` connection says the same.
    let as_call = call(&ports, peer.id(), "info", &[]);
    as_call.expect_code(0);
    let as_call = as_call.json();
    for key in ["tag", "host", "port", "group", "hub", "module_hash"] {
        assert_eq!(as_call[key], info[key], "{key}: {as_call} vs {info}");
    }
    assert_eq!(strings(&as_call["connections"]), connections);
}

#[test]
fn eight_mib_arguments_and_results_arrive_intact() {
    let ports = Ports::new();
    let _server = TestPeer::probe(&ports, &[]);
    let out = run_entry(&ports, &app("core_probe"), "big_payload", &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("8 MiB round trip ok"), "{out}");
}

#[test]
fn large_byte_strings_travel_beside_their_values_through_every_kind_of_call() {
    let ports = Ports::new();
    let _server = TestPeer::probe(&ports, &[]);
    let out = run_entry(&ports, &app("core_probe"), "blobs_both_ways", &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("blobs both ways ok"), "{out}");
}

/// `netrun inspect app.wasm | head -3`: the printing commands stop quietly when their reader
/// has gone (they used to panic with a backtrace), and name a stdout that cannot be written.
#[test]
fn printing_commands_end_quietly_when_their_reader_has_gone() {
    let ports = Ports::new();
    let probe = app("core_probe");
    let peer = TestPeer::probe(&ports, &[]);
    let commands: [Vec<&str>; 4] = [
        vec!["inspect", arg(&probe)],
        vec!["inspect", arg(&probe), "--json"],
        vec!["call", peer.id(), "add", "2", "3"],
        vec!["info", peer.id()],
    ];
    for command in &commands {
        let out = netrun_writing_to(&ports, Stream::Stdout, Output::ClosedPipe, command, &[]);
        out.expect_code(0);
        assert!(out.stderr.is_empty(), "it said something\n{out}");
        let out = netrun_writing_to(&ports, Stream::Stdout, Output::Full, command, &[]);
        out.expect_code(1)
            .expect_stderr(&["cannot write to standard output"]);
        assert!(!out.stderr.contains("panicked"), "{out}");
    }
}

/// `netrun call --group g f 2>&1 | head -1`: what a command says on stderr beside its output
/// (which member served a call, an error) is dropped when nobody reads it; the command still
/// does its work and ends with its own exit code (it used to panic, exit 101).
#[test]
fn a_command_whose_stderr_has_gone_still_ends_with_its_own_exit_code() {
    let ports = Ports::new();
    let peer = TestPeer::start(&ports, &app("core_probe"), &["--group", "solo"], &[]);
    let served_by = ["call", "--group", "solo", "add", "2", "3"];
    let unknown = ["call", peer.id(), "no_such_function"];
    for output in [Output::ClosedPipe, Output::Full] {
        let out = netrun_writing_to(&ports, Stream::Stderr, output, &served_by, &[]);
        out.expect_code(0);
        assert_eq!(out.stdout.trim(), "5", "{output:?}\n{out}");
        let out = netrun_writing_to(&ports, Stream::Stderr, output, &unknown, &[]);
        out.expect_code(1);
        assert!(out.stdout.is_empty(), "{output:?}\n{out}");
    }
    // With stderr read, the same commands say what they dropped above.
    netrun(&ports, &served_by, &[]).expect_stderr(&["served by "]);
    netrun(&ports, &unknown, &[]).expect_stderr(&["no_such_function"]);
}

#[test]
fn inspect_shows_functions_types_entries_and_hash() {
    let ports = Ports::new();
    let probe = app("core_probe");
    let out = netrun(&ports, &["inspect", arg(&probe)], &[]);
    out.expect_code(0);
    for needle in [
        "echo(message: String) -> String",
        "add(a: i64, b: i64) -> i64",
        "tagged_name(x: u32) -> u32",
        "counter() -> u64",
        "typed_parity",
        "big_payload",
        "discover",
        "remote_errors",
        "whoami",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} missing\n{out}");
    }
    let hash = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("hash: "))
        .unwrap_or_else(|| panic!("no `hash: ` line\n{out}"));
    assert!(
        hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{hash:?} is not 64 hex digits"
    );

    let json = netrun(&ports, &["inspect", arg(&probe), "--json"], &[]);
    json.expect_code(0);
    let json = json.json();
    assert_eq!(json["hash"], hash, "the same hash both ways: {json}");
    let functions = json["functions"].as_array().expect("functions array");
    let find = |name: &str| {
        functions
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {json}"))
    };
    let add = find("add");
    assert_eq!(
        add["params"],
        json!([{"name": "a", "ty": "i64"}, {"name": "b", "ty": "i64"}])
    );
    assert_eq!(add["ret"], "i64");
    // The fingerprint is the ABI crate's, of the types only (a number or its hex spelling).
    assert_eq!(
        fingerprint(&add["fingerprint"]),
        netrun_abi::manifest::fingerprint("(i64, i64) -> i64"),
        "{add}"
    );
    let echo = find("echo");
    assert_eq!(echo["params"], json!([{"name": "message", "ty": "String"}]));
    assert_eq!(
        fingerprint(&echo["fingerprint"]),
        netrun_abi::manifest::fingerprint("(String) -> String"),
        "{echo}"
    );
    assert_eq!(find("tagged_name")["ret"], "u32");
    let entries = strings(&json["entries"]);
    for entry in [
        "typed_parity",
        "big_payload",
        "discover",
        "remote_errors",
        "fail",
        "whoami",
    ] {
        assert!(
            entries.iter().any(|e| e == entry),
            "{entry} missing: {json}"
        );
    }
}

/// A fingerprint as `inspect --json` spells it: a number, or a string of hex digits.
fn fingerprint(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| {
            value
                .as_str()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        })
        .unwrap_or_else(|| panic!("not a fingerprint: {value}"))
}

/// `NET_IS_HUB`: any value but a falsey one makes a hub (app-net: any value at all).
#[test]
fn net_is_hub_takes_any_value_but_a_falsey_one() {
    let ports = Ports::new();
    for (value, hub) in [
        ("1", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("no", false),
        ("off", false),
    ] {
        let mut peer = TestPeer::probe(&ports, &[("NET_IS_HUB", value)]);
        let info = netrun(&ports, &["info", peer.id()], &[]);
        info.expect_code(0);
        assert_eq!(info.json()["hub"], hub, "NET_IS_HUB={value}: {info}");
        peer.kill();
    }
}

/// `inspect` reads a module without running any of it: a module that traps as soon as it is
/// instantiated is described all the same, while serving it fails on that trap.
#[test]
fn inspect_runs_no_guest_code() {
    let ports = Ports::new();
    let scratch = Scratch::new("trap-on-start");
    let path = scratch.file("trap_on_start.wasm", &wasm::trapping_on_start());
    let out = netrun(&ports, &["inspect", arg(&path)], &[]);
    out.expect_code(0);
    assert!(out.stdout.contains("entries:\n  go\n"), "{out}");
    let served = netrun(&ports, &["run", arg(&path), "--entry", "go"], &[]);
    served.expect_code(1).expect_stderr(&["unreachable"]);
    assert!(!served.stdout.contains(" listening on "), "{served}");
}

/// `peer.info()`, a call by name, and `net::log` at every level, from guest code.
#[test]
fn guest_code_uses_the_peer_api_and_the_log() {
    let ports = Ports::new();
    let group = [("NET_GROUP", "api")];
    let server = TestPeer::probe(&ports, &group);
    let out = run_entry(&ports, &app("core_probe"), "peer_api", &group);
    out.expect_code(0);
    let info_line = format!(
        "info: {} api hub=false offers add=true events=0",
        server.id()
    );
    assert!(
        out.stdout.contains(&info_line),
        "{info_line:?} missing\n{out}"
    );
    assert!(out.stdout.contains("call add(2, 3): 5"), "{out}");
    for (level, line) in [
        ("INFO", "peer_api: an info line"),
        ("WARN", "peer_api: a warning line"),
        ("ERROR", "peer_api: an error line"),
    ] {
        let logged = out
            .stderr
            .lines()
            .any(|l| l.contains(level) && l.ends_with(line));
        assert!(logged, "no {level} line {line:?}\n{out}");
    }
    // Debug lines only with NET_DEV (the run is over: its stderr is complete).
    assert!(!out.stderr.contains("peer_api: a debug line"), "{out}");
    let dev = run_entry(
        &ports,
        &app("core_probe"),
        "peer_api",
        &[group[0], ("NET_DEV", "1")],
    );
    dev.expect_code(0);
    let logged = dev
        .stderr
        .lines()
        .any(|l| l.contains("DEBUG") && l.ends_with("peer_api: a debug line"));
    assert!(logged, "{dev}");
}
