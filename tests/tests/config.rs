//! Configuration: the defaults of `NET_HOST`, `NET_PORT` and `NET_PORT_RANGE`, the flags that
//! match them, flags winning over the environment, and the default cache directory.
//!
//! Port 3010, the default first port, is never bound or scanned here: other programs on the
//! machine (a `make run`, another test run) may use it, and a test that raced them would be
//! flaky. Its default is read from `--help` and from the error a peer (and the message `peers`)
//! gives for an empty range (`NET_PORT_RANGE=0`), which names the first port without touching
//! it. The default range is seen by binding: in the test's own block, with its first four
//! ports taken.

use std::net::TcpListener;

use netrun_tests::{HOST, Input, Ports, Scratch, TestPeer, app, arg, netrun, netrun_unset};

/// The block's variables, which these tests remove to see the defaults.
const BLOCK_VARS: [&str; 3] = ["NET_HOST", "NET_PORT", "NET_PORT_RANGE"];

#[test]
fn help_shows_the_defaults_of_host_port_and_range() {
    let ports = Ports::new();
    for command in ["run", "peers"] {
        let out = netrun_unset(&ports, &[command, "--help"], &[], &BLOCK_VARS);
        out.expect_code(0);
        for (flag, default) in [
            ("--host <IP>", "[env: NET_HOST=] [default: 127.0.0.1]"),
            ("--port <PORT>", "[env: NET_PORT=] [default: 3010]"),
            (
                "--port-range <RANGE>",
                "[env: NET_PORT_RANGE=] [default: 5]",
            ),
        ] {
            // The flag's entry: its line, and the description under it when clap puts it
            // there (it does once any option's help is long).
            let lines: Vec<&str> = out.stdout.lines().collect();
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(flag))
                .unwrap_or_else(|| panic!("no {flag} line\n{out}"));
            let entry = if lines[at].contains("[default:") {
                lines[at]
            } else {
                lines.get(at + 1).copied().unwrap_or_default()
            };
            assert!(entry.ends_with(default), "{command}: {entry:?}\n{out}");
        }
    }
}

#[test]
fn the_first_port_is_3010_by_default() {
    let ports = Ports::new();
    let probe = app("core_probe");
    // An empty range: nothing is bound or scanned, and the messages name the first port.
    let range = [("NET_PORT_RANGE", "0")];
    let unset = ["NET_HOST", "NET_PORT"];
    netrun_unset(&ports, &["run", arg(&probe)], &range, &unset)
        .expect_code(1)
        .expect_stderr(&[
            "no free port on 127.0.0.1 in 3010..3010 (NET_PORT=3010, NET_PORT_RANGE=0)",
        ]);
    netrun_unset(&ports, &["peers"], &range, &unset)
        .expect_code(0)
        .expect_stderr(&["no peers found on 127.0.0.1 ports 3010..3010"]);
}

#[test]
fn a_peer_binds_loopback_and_the_first_free_of_five_ports_by_default() {
    let ports = Ports::new();
    let squatters: Vec<TcpListener> = (0..4)
        .map(|i| TcpListener::bind((HOST, ports.start + i)).expect("bind loopback"))
        .collect();
    let unset = ["NET_HOST", "NET_PORT_RANGE"];
    let fifth = TestPeer::start_unset(&ports, &["run", arg(&app("core_probe"))], &[], &unset);
    assert_eq!(
        (fifth.host(), fifth.port()),
        (HOST, ports.start + 4),
        "{}",
        fifth.report()
    );
    // With the five taken, the sixth port of the block (free) is not tried.
    netrun_unset(&ports, &["run", arg(&app("core_probe"))], &[], &unset)
        .expect_code(1)
        .expect_stderr(&[&format!(
            "no free port on 127.0.0.1 in {}..{} (NET_PORT={}, NET_PORT_RANGE=5)",
            ports.start,
            ports.start + 5,
            ports.start
        )]);
    // `peers` with the same defaults finds it.
    let listing = netrun_unset(&ports, &["peers", "--json"], &[], &unset);
    listing.expect_code(0);
    assert_eq!(
        listing.json()["peers"]
            .as_object()
            .map(|p| p.keys().cloned().collect::<Vec<_>>()),
        Some(vec![fifth.id().to_string()]),
        "{listing}"
    );
    drop(squatters);
}

/// `--host`, `--port`, `--port-range`, `--group` and `--hub` win over `NET_HOST` (here not even
/// an address), `NET_PORT`, `NET_PORT_RANGE`, `NET_GROUP` and `NET_IS_HUB`, for `run` and for
/// `peers`.
#[test]
fn flags_win_over_the_environment() {
    let ports = Ports::new();
    let port = (ports.start + 2).to_string();
    let env = [
        ("NET_HOST", "not an address"),
        ("NET_PORT_RANGE", "5"),
        ("NET_GROUP", "from-env"),
        ("NET_IS_HUB", "no"),
    ];
    let flags = [
        "--host",
        HOST,
        "--port",
        &port,
        "--port-range",
        "1",
        "--group",
        "from-flag",
        "--hub",
    ];
    let probe = app("core_probe");
    let mut args = vec!["run", arg(&probe)];
    args.extend(flags);
    let peer = TestPeer::start_command(&ports, &args, &env, Input::Null);
    assert_eq!(
        peer.id(),
        Ports::id_of(ports.start + 2, "from-flag"),
        "{}",
        peer.report()
    );
    let info = netrun_tests::info(&ports, peer.id());
    assert_eq!(info["hub"], true, "{info}");
    // A range of one port, taken: the environment's five would have had room.
    netrun(&ports, &args, &env)
        .expect_code(1)
        .expect_stderr(&["no free port", "NET_PORT_RANGE=1"]);
    // `peers` scans where its flags say: at the peer's port it finds the peer; one port past
    // it, nobody, where the environment's range (the block's first five) would find it.
    let past = (ports.start + 3).to_string();
    let scan = |from: &str| {
        let out = netrun(
            &ports,
            &[
                "peers",
                "--json",
                "--host",
                HOST,
                "--port",
                from,
                "--port-range",
                "1",
            ],
            &[env[0]],
        );
        out.expect_code(0);
        out.json()["peers"]
            .as_object()
            .map(|p| p.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(scan(&port), [peer.id()]);
    assert_eq!(scan(&past), Vec::<String>::new());
}

/// Without `NET_CACHE_DIR`, compiled modules go to `$XDG_CACHE_HOME/netrun`, or, without that,
/// to `$HOME/.cache/netrun` (both scratch directories here).
#[test]
fn the_default_cache_directory_is_under_xdg_cache_home_or_home() {
    let ports = Ports::new();
    let scratch = Scratch::new("default-cache");
    let home = scratch.missing("home");
    let xdg = scratch.missing("xdg");
    let cached = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|name| name.ends_with(".cwasm"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let probe = app("core_probe");
    let all = ["run", arg(&probe)];
    let mut with_xdg = TestPeer::start_unset(
        &ports,
        &all,
        &[("HOME", arg(&home)), ("XDG_CACHE_HOME", arg(&xdg))],
        &["NET_CACHE_DIR"],
    );
    // The module is stored before the peer listens.
    assert_eq!(
        cached(&xdg.join("netrun")).len(),
        1,
        "{}",
        with_xdg.report()
    );
    assert!(!home.exists(), "{}", with_xdg.report());
    with_xdg.kill();

    let with_home = TestPeer::start_unset(
        &ports,
        &all,
        &[("HOME", arg(&home))],
        &["NET_CACHE_DIR", "XDG_CACHE_HOME"],
    );
    assert_eq!(
        cached(&home.join(".cache").join("netrun")).len(),
        1,
        "{}",
        with_home.report()
    );
    // And it is used: an entry started the same way loads it.
    let entry = netrun_unset(
        &ports,
        &["run", arg(&probe), "--entry", "whoami"],
        &[("HOME", arg(&home))],
        &["NET_CACHE_DIR", "XDG_CACHE_HOME"],
    );
    entry.expect_code(0).expect_stderr(&["from cache"]);
}
