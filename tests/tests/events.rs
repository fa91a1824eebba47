//! Events and subscriptions between real peers: the original's `simple_subscription` example
//! (a hub reading lines from stdin and triggering `myEvent`, subscribers printing them), and
//! what it did not cover: delivery order and exactly-once, pruning of dead subscribers, a
//! panicking subscriber, a hub started after its subscribers, a subscriber that restarts.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netrun_tests::{
    Input, Ports, STOP_LIMIT, TestPeer, app, arg, netrun, subscription_list, wait_for_info,
};

const GROUP: (&str, &str) = ("NET_GROUP", "myApp");
/// Subscribers register within a few seconds (every 2 s); a generous bound for slow machines.
const REGISTER_LIMIT: Duration = Duration::from_secs(20);
const DELIVERY_LIMIT: Duration = Duration::from_secs(20);

fn subscriber(ports: &Ports) -> TestPeer {
    TestPeer::start(ports, &app("simple_subscription"), &[], &[GROUP])
}

/// The hub as the README starts it, with a stdin the test writes to.
fn hub(ports: &Ports) -> (TestPeer, ChildStdin) {
    let mut hub = TestPeer::start_with(
        ports,
        &app("simple_subscription"),
        &["--entry", "hub", "--hub"],
        &[GROUP],
        Input::Piped,
    );
    let stdin = hub.stdin();
    (hub, stdin)
}

fn send(stdin: &mut ChildStdin, messages: &[String]) {
    for message in messages {
        writeln!(stdin, "{message}").expect("the hub reads its stdin");
    }
    stdin.flush().expect("the hub reads its stdin");
}

/// Closes the hub's stdin: end of input ends its entry, and it exits by itself, cleanly (no
/// signal is sent).
#[track_caller]
fn end_input(hub: &mut TestPeer, stdin: ChildStdin) {
    drop(stdin);
    let status = hub.wait_for_exit(STOP_LIMIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "the hub did not exit cleanly at end of input: {status:?}\n{}",
        hub.report()
    );
}

/// Waits until the hub has exactly the subscribers `ids` (by peer id), and returns them.
#[track_caller]
fn wait_for_subscribers(ports: &Ports, hub: &TestPeer, ids: &[&str]) {
    let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    want.sort();
    let (met, info) = wait_for_info(ports, hub.id(), REGISTER_LIMIT, |info| {
        let mut have: Vec<String> = subscription_list(info, "subscribers")
            .into_iter()
            .map(|(_, peer, _)| peer)
            .collect();
        have.sort();
        have == want
    });
    assert!(
        met,
        "the hub's subscribers never became {want:?}: {info}\n{}",
        hub.report()
    );
}

/// The lines of `peer`'s stdout that are among `messages`, in the order printed.
fn received(peer: &TestPeer, messages: &[String]) -> Vec<String> {
    peer.stdout()
        .lines()
        .filter(|line| messages.iter().any(|m| m == line))
        .map(str::to_string)
        .collect()
}

/// Waits until `peer` printed the last of `messages` (a sentinel, see [`with_sentinel`]), then
/// checks that it printed each of them exactly once, in order. A subscriber's deliveries are
/// in order, so a message delivered twice would have come before the sentinel.
#[track_caller]
fn expect_all_in_order(peer: &TestPeer, messages: &[String]) {
    let last = messages.last().expect("messages");
    assert!(
        peer.wait_for_stdout(last, DELIVERY_LIMIT),
        "never received {last:?}\n{}",
        peer.report()
    );
    assert_eq!(
        received(peer, messages),
        messages,
        "every message exactly once, in order\n{}",
        peer.report()
    );
}

/// `messages` followed by a sentinel: a line sent nowhere else, to be sent last.
fn with_sentinel(mut messages: Vec<String>) -> Vec<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    messages.push(format!("sentinel {}", NEXT.fetch_add(1, Ordering::Relaxed)));
    messages
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    with_sentinel((0..count).map(|i| format!("{prefix}{i:02}")).collect())
}

#[test]
fn a_hub_delivers_every_message_once_in_order_and_prunes_a_killed_subscriber() {
    let ports = Ports::new();
    let mut subscribers: Vec<TestPeer> = (0..3).map(|_| subscriber(&ports)).collect();
    let (mut hub, mut stdin) = hub(&ports);
    let ids: Vec<String> = subscribers.iter().map(|s| s.id().to_string()).collect();
    wait_for_subscribers(
        &ports,
        &hub,
        &ids.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // Each subscriber's own `info` lists its subscription on the hub.
    let mine = netrun_tests::info(&ports, subscribers[0].id());
    assert_eq!(
        subscription_list(&mine, "subscriptions"),
        [(
            "myEvent".to_string(),
            hub.id().to_string(),
            "handle_something_happened".to_string()
        )],
        "{mine}"
    );

    let first = numbered("message ", 20);
    send(&mut stdin, &first);
    for peer in &subscribers {
        expect_all_in_order(peer, &first);
    }
    assert!(
        !hub.stdout().lines().any(|l| first.contains(&l.to_string())),
        "the hub delivers; it does not subscribe to itself\n{}",
        hub.report()
    );

    // A subscriber dies without a word: the next delivery finds it unreachable and drops it.
    let mut dead = subscribers.pop().expect("three subscribers");
    dead.kill();
    let second = numbered("after ", 5);
    send(&mut stdin, &second);
    for peer in &subscribers {
        expect_all_in_order(peer, &second);
    }
    let alive: Vec<&str> = subscribers.iter().map(|s| s.id()).collect();
    wait_for_subscribers(&ports, &hub, &alive);
    assert!(
        hub.wait_for_stderr("dropping subscriber", DELIVERY_LIMIT),
        "the hub says why it dropped the subscriber\n{}",
        hub.report()
    );
    assert!(hub.exited().is_none(), "{}", hub.report());

    end_input(&mut hub, stdin);
}

#[test]
fn a_panicking_subscriber_disturbs_neither_the_hub_nor_the_others() {
    let ports = Ports::new();
    let steady = subscriber(&ports);
    let fragile = TestPeer::start(&ports, &app("events_probe"), &[], &[]);
    let (mut hub, mut stdin) = hub(&ports);
    wait_for_subscribers(&ports, &hub, &[steady.id(), fragile.id()]);

    let messages = with_sentinel(["one", "boom", "two", "three"].map(String::from).to_vec());
    send(&mut stdin, &messages);
    expect_all_in_order(&steady, &messages);
    let fragile_lines: Vec<String> = messages.iter().map(|m| format!("fragile: {m}")).collect();
    expect_all_in_order(&fragile, &fragile_lines);
    assert!(
        fragile.wait_for_stderr("replacing the instance", DELIVERY_LIMIT),
        "{}",
        fragile.report()
    );
    assert!(
        hub.wait_for_stderr("fragile cannot take a boom", DELIVERY_LIMIT),
        "the hub logs the remote panic\n{}",
        hub.report()
    );
    // A panic is the handler's failure, not the subscriber's: it stays subscribed.
    wait_for_subscribers(&ports, &hub, &[steady.id(), fragile.id()]);
    assert!(hub.exited().is_none(), "{}", hub.report());
}

#[test]
fn a_hub_started_after_its_subscribers_gets_them_without_a_restart() {
    let ports = Ports::new();
    let debug = [GROUP, ("NET_DEV", "1")];
    let subscribers: Vec<TestPeer> = (0..2)
        .map(|_| TestPeer::start(&ports, &app("simple_subscription"), &[], &debug))
        .collect();
    // Each subscriber has looked for hubs and found none (its debug log says so): the hub is
    // found by a later scan.
    for peer in &subscribers {
        assert!(
            peer.wait_for_stderr(
                "subscription handle_something_happened: no matching peer yet",
                REGISTER_LIMIT
            ),
            "no empty scan logged\n{}",
            peer.report()
        );
    }
    let (hub, mut stdin) = hub(&ports);
    let ids: Vec<&str> = subscribers.iter().map(|s| s.id()).collect();
    wait_for_subscribers(&ports, &hub, &ids);
    let messages = with_sentinel(vec!["late hub".to_string()]);
    send(&mut stdin, &messages);
    for peer in &subscribers {
        expect_all_in_order(peer, &messages);
    }
}

#[test]
fn a_restarted_subscriber_is_delivered_to_once() {
    let ports = Ports::new();
    let mut first = subscriber(&ports);
    let (hub, mut stdin) = hub(&ports);
    wait_for_subscribers(&ports, &hub, &[first.id()]);
    let id = first.id().to_string();
    // Killed: it cannot unsubscribe. Its successor takes the same port, hence the same id.
    first.kill();
    let second = subscriber(&ports);
    assert_eq!(second.id(), id, "{}", second.report());
    assert!(
        second.wait_for_stderr("subscribed handle_something_happened", REGISTER_LIMIT),
        "{}",
        second.report()
    );
    let messages = with_sentinel(vec!["only once".to_string()]);
    send(&mut stdin, &messages);
    expect_all_in_order(&second, &messages);
    wait_for_subscribers(&ports, &hub, &[second.id()]);
}

#[test]
fn a_subscriber_that_stops_cleanly_unsubscribes() {
    let ports = Ports::new();
    let mut leaving = subscriber(&ports);
    let staying = subscriber(&ports);
    let (hub, _stdin) = hub(&ports);
    wait_for_subscribers(&ports, &hub, &[leaving.id(), staying.id()]);
    let status = leaving.terminate(STOP_LIMIT);
    assert!(status.is_some_and(|s| s.success()), "{}", leaving.report());
    // Gone from the list at once, without waiting for a delivery to fail.
    wait_for_subscribers(&ports, &hub, &[staying.id()]);
    assert!(
        hub.stderr().contains("unsubscribed from event myEvent"),
        "{}",
        hub.report()
    );
}

#[test]
fn inspect_lists_events_subscriptions_and_flags() {
    let ports = Ports::new();
    let probe = app("events_probe");
    let out = netrun(&ports, &["inspect", arg(&probe)], &[]);
    out.expect_code(0);
    for needle in [
        "subscriptions:\n  fragile(message: String) -> ()",
        "on event \"myEvent\" from hubs_only, on_host",
        "flag handlers:\n  BUSY(function: String, peer: net::Peer) -> String",
        "busy_flag() -> String",
        "events:\n  (none)",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} missing\n{out}");
    }
    let json = netrun(
        &ports,
        &["inspect", arg(&app("simple_subscription")), "--json"],
        &[],
    );
    json.expect_code(0);
    let json = json.json();
    assert_eq!(json["events"][0]["name"], "myEvent", "{json}");
    assert_eq!(json["events"][0]["ret"], "String", "{json}");
    assert_eq!(
        json["subscriptions"][0]["subscription"]["event"], "myEvent",
        "{json}"
    );
    assert_eq!(
        json["subscriptions"][0]["subscription"]["hubs_only"], true,
        "{json}"
    );
}

#[test]
fn the_hubs_prompt_shows_before_it_reads_each_line() {
    let ports = Ports::new();
    let (mut hub, mut stdin) = hub(&ports);
    let prompted = |times: usize| {
        netrun_tests::wait_until(DELIVERY_LIMIT, || {
            hub.stdout_and_unfinished()
                .ends_with(&"Message: ".repeat(times))
        })
    };
    // `print!("Message: ")` has no line end: the hub writes it when the guest reads stdin.
    assert!(
        prompted(1),
        "no prompt before the first line\n{}",
        hub.report()
    );
    send(&mut stdin, &["hello".to_string()]);
    assert!(
        prompted(2),
        "no prompt before the second line\n{}",
        hub.report()
    );
    end_input(&mut hub, stdin);
}
