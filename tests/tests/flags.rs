//! Custom flags between real peers: a function answers with a flag, and the caller's side
//! resolves it: with the caller's module's handler, or as an error naming an unknown flag.

use netrun_tests::{Ports, TestPeer, app, call, run_entry};

/// Both peers run `events_probe` in one group; the entry calls the serving one.
const GROUP: (&str, &str) = ("NET_GROUP", "flags");

#[test]
fn a_declared_flag_runs_its_handler_on_the_caller_and_an_unknown_one_is_an_error() {
    let ports = Ports::new();
    let callee = TestPeer::start(&ports, &app("events_probe"), &[], &[GROUP]);
    let demo = run_entry(&ports, &app("events_probe"), "flag_demo", &[GROUP]);
    demo.expect_code(0);
    let lines: Vec<&str> = demo
        .stdout
        .lines()
        .filter(|l| !l.contains(" listening on "))
        .collect();
    assert_eq!(lines.len(), 2, "{demo}");
    assert_eq!(lines[0], "BUSY handled", "{demo}");
    assert!(
        lines[1].contains("UNDECLARED") && lines[1].contains("odd_flag"),
        "{demo}"
    );
    // The callee says which flags its module handles.
    let info = netrun_tests::info(&ports, callee.id());
    assert_eq!(
        info["flags"],
        serde_json::json!(["BUSY", "INVALID_CONNECTION", "NULL"]),
        "{info}"
    );
    // The handler ran on the caller (its log line is in the caller's log), not on the callee.
    assert!(demo.stderr.contains("busy_flag on"), "{demo}");
    assert!(
        !callee.stderr().contains("answered BUSY"),
        "{}",
        callee.report()
    );
}

#[test]
fn a_flag_handler_of_another_type_than_the_function_is_refused() {
    let ports = Ports::new();
    let _callee = TestPeer::start(&ports, &app("events_probe"), &[], &[GROUP]);
    let demo = run_entry(&ports, &app("events_probe"), "flag_type_demo", &[GROUP]);
    demo.expect_code(0);
    assert!(
        demo.stdout
            .contains("handler here returns String, where busy_count returns u32"),
        "{demo}"
    );
}

#[test]
fn the_cli_names_a_flag_it_cannot_resolve() {
    let ports = Ports::new();
    let callee = TestPeer::start(&ports, &app("events_probe"), &[], &[GROUP]);
    call(&ports, callee.id(), "busy_flag", &[])
        .expect_code(1)
        .expect_stderr(&["busy_flag", "flag BUSY"]);
}
