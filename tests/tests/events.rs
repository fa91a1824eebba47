//! Events and subscriptions between real peers: the original's `simple_subscription` example
//! (a hub reading lines from stdin and triggering `myEvent`, subscribers printing them), and
//! what it did not cover: delivery order and exactly-once, pruning of dead subscribers, a
//! panicking subscriber, a hub started after its subscribers, a subscriber that restarts, the
//! `NET_THREAD_LIMIT` bound, a slow subscriber, handlers with two arguments, and the `groups`
//! and `peers` filters (with `events_probe`).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netrun_tests::{
    Input, PINNED_PORT, Ports, STOP_LIMIT, TestPeer, app, arg, call, netrun, subscription_list,
    wait_for_info, wait_until,
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
    // The hub's `info` lists the events its module declares.
    let hub_info = netrun_tests::info(&ports, hub.id());
    assert_eq!(
        hub_info["events"],
        serde_json::json!(["myEvent"]),
        "{hub_info}"
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
        "events:\n  news(headline: String, n: u32) -> (String, u32)",
        "\n  tick(n: u32, ms: u64) -> (u32, u64)",
        "on event \"news\" from groups = [\"press\"]",
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

fn events_probe(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> TestPeer {
    TestPeer::start(ports, &app("events_probe"), args, env)
}

/// Waits until `peer`'s `list` (`subscribers` or `subscriptions`) has the entry
/// `(event, other, handler)`; returns the list.
#[track_caller]
fn wait_for_entry(
    ports: &Ports,
    peer: &TestPeer,
    list: &str,
    (event, other, handler): (&str, &str, &str),
) -> Vec<(String, String, String)> {
    let want = (event.to_string(), other.to_string(), handler.to_string());
    let (met, info) = wait_for_info(ports, peer.id(), REGISTER_LIMIT, |info| {
        subscription_list(info, list).contains(&want)
    });
    assert!(met, "{want:?} never in {list}: {info}\n{}", peer.report());
    subscription_list(&info, list)
}

/// The `tick N START END` lines `peer` printed: (n, start, end).
fn ticks(peer: &TestPeer) -> Vec<(u32, u64, u64)> {
    peer.stdout()
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("tick ")?.split(' ');
            let mut next = || words.next()?.parse::<u64>().ok();
            Some((u32::try_from(next()?).ok()?, next()?, next()?))
        })
        .collect()
}

/// The most spans that were running at one instant. Spans that touch do not overlap.
fn most_at_once(spans: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = spans
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    // At the same instant an end comes before a start.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).expect("never negative")
}

#[test]
fn most_at_once_counts_overlaps() {
    assert_eq!(most_at_once(&[]), 0);
    assert_eq!(most_at_once(&[(0, 10), (10, 20)]), 1);
    assert_eq!(most_at_once(&[(0, 10), (5, 20), (6, 7)]), 3);
    assert_eq!(most_at_once(&[(0, 10), (5, 20), (11, 30)]), 2);
}

/// With `--thread-limit 2`, four subscribers whose handler (two arguments) sleeps get two
/// ticks each, and no more than two handlers ever run at once. Judged by the handlers' own
/// spans, each printed by its subscriber, not by how long anything took.
#[test]
fn at_most_thread_limit_deliveries_run_at_once() {
    const LIMIT: usize = 2;
    let ports = Ports::new();
    let hub = events_probe(
        &ports,
        &["--hub", "--thread-limit", &LIMIT.to_string()],
        &[],
    );
    let subscribers: Vec<TestPeer> = (0..4).map(|_| events_probe(&ports, &[], &[])).collect();
    let mut ids: Vec<String> = subscribers.iter().map(|s| s.id().to_string()).collect();
    ids.sort();
    let (met, info) = wait_for_info(&ports, hub.id(), REGISTER_LIMIT, |info| {
        let mut tick: Vec<String> = subscription_list(info, "subscribers")
            .into_iter()
            .filter(|(event, _, handler)| event == "tick" && handler == "slow_tick")
            .map(|(_, peer, _)| peer)
            .collect();
        tick.sort();
        tick == ids
    });
    assert!(met, "the subscribers never all registered: {info}");
    assert_eq!(
        info["events"],
        serde_json::json!(["news", "tick"]),
        "{info}"
    );

    let fired = call(&ports, hub.id(), "fire_ticks", &["2", "1500"]);
    fired.expect_code(0);
    assert_eq!(fired.stdout.trim(), "2", "{fired}");
    let mut spans = Vec::new();
    for peer in &subscribers {
        assert!(
            wait_until(DELIVERY_LIMIT, || ticks(peer).len() >= 2),
            "two ticks never arrived\n{}",
            peer.report()
        );
        let got = ticks(peer);
        let numbers: Vec<u32> = got.iter().map(|t| t.0).collect();
        assert_eq!(
            numbers,
            [0, 1],
            "each tick once, in order\n{}",
            peer.report()
        );
        spans.extend(got.iter().map(|&(_, start, end)| (start, end)));
    }
    assert!(
        most_at_once(&spans) <= LIMIT,
        "more than {LIMIT} deliveries ran at once: {spans:?}\n{}",
        hub.report()
    );
}

/// A subscriber slower than the hub's `--timeout`: the code that triggered the event is not
/// told (its call succeeds), the hub logs the failed delivery, the subscriber stops the handler
/// when the delivery's time is up, and it stays subscribed and gets the next value.
#[test]
fn a_slow_subscriber_is_logged_never_raised_to_the_caller() {
    let ports = Ports::new();
    let hub = events_probe(&ports, &["--hub", "--timeout", "1"], &[]);
    let slow = events_probe(&ports, &[], &[]);
    wait_for_entry(
        &ports,
        &hub,
        "subscribers",
        ("tick", slow.id(), "slow_tick"),
    );

    let fired = call(&ports, hub.id(), "fire_ticks", &["1", "3000"]);
    fired.expect_code(0);
    assert_eq!(fired.stdout.trim(), "1", "{fired}");
    assert!(
        hub.wait_for_stderr("event tick: delivery to slow_tick failed", DELIVERY_LIMIT),
        "{}",
        hub.report()
    );
    assert!(
        hub.stderr().contains("timed out"),
        "the log says why\n{}",
        hub.report()
    );
    // The delivery's time travelled with it: the subscriber stopped the slow handler when it
    // ran out (replacing its instance), and it is still subscribed: the next value reaches it.
    assert!(
        slow.wait_for_stderr("slow_tick was stopped (timed out", DELIVERY_LIMIT),
        "{}",
        slow.report()
    );
    assert!(ticks(&slow).is_empty(), "{}", slow.report());
    call(&ports, hub.id(), "fire_ticks", &["1", "0"]).expect_code(0);
    assert!(
        wait_until(DELIVERY_LIMIT, || ticks(&slow).len() == 1),
        "{}",
        slow.report()
    );
    wait_for_entry(
        &ports,
        &hub,
        "subscribers",
        ("tick", slow.id(), "slow_tick"),
    );
}

/// `groups = ["press"]` subscribes only on peers of group `press`; `peers =
/// ["127.0.0.1:19990"]` only on the peer at that address, whatever its group. Both handlers
/// take two arguments. Runs in the pinned block, whose first port is the one `events_probe`
/// names.
#[test]
fn subscription_filters_pick_publishers_by_group_and_by_address() {
    let pinned = Ports::pinned();
    let ports = pinned.ports;
    let inspect = netrun(&ports, &["inspect", arg(&app("events_probe"))], &[]);
    inspect.expect_code(0);
    assert!(
        inspect
            .stdout
            .contains(&format!("peers = [\"127.0.0.1:{PINNED_PORT}\"]")),
        "events_probe names another port than the tests' pinned one\n{inspect}"
    );
    let addressed = events_probe(&ports, &[], &[("NET_GROUP", "other")]);
    assert_eq!(addressed.port(), PINNED_PORT, "{}", addressed.report());
    let press = events_probe(&ports, &[], &[("NET_GROUP", "press")]);
    let reader = events_probe(&ports, &[], &[("NET_GROUP", "desk")]);
    let (pinned_news, press_news) = (
        ("news", addressed.id(), "pinned_news"),
        ("news", press.id(), "press_news"),
    );
    wait_for_entry(&ports, &reader, "subscriptions", pinned_news);
    wait_for_entry(&ports, &reader, "subscriptions", press_news);
    // A press peer started now is registered by a later scan than the one that found the
    // first two: once it is, that scan's answers (wrong ones included) are all in.
    let late = events_probe(&ports, &[], &[("NET_GROUP", "press")]);
    let late_news = ("news", late.id(), "press_news");
    let have = wait_for_entry(&ports, &reader, "subscriptions", late_news);
    let have: BTreeSet<(String, String, String)> = have.into_iter().collect();
    let want: BTreeSet<(String, String, String)> = [pinned_news, press_news, late_news]
        .into_iter()
        .map(|(e, p, h)| (e.to_string(), p.to_string(), h.to_string()))
        .collect();
    assert_eq!(have, want, "{}", reader.report());
    // The publishers agree.
    for (publisher, handler) in [
        (&addressed, "press_news"),
        (&press, "pinned_news"),
        (&late, "pinned_news"),
    ] {
        let theirs = subscription_list(&netrun_tests::info(&ports, publisher.id()), "subscribers");
        assert!(
            !theirs
                .iter()
                .any(|(_, peer, h)| peer == reader.id() && h == handler),
            "{handler} of the reader is registered on {}: {theirs:?}",
            publisher.id()
        );
    }

    // Both arguments arrive.
    call(&ports, press.id(), "publish_news", &[r#""pressed""#, "2"]).expect_code(0);
    assert!(
        reader.wait_for_stdout("press: pressed 2", DELIVERY_LIMIT),
        "{}",
        reader.report()
    );
    call(
        &ports,
        addressed.id(),
        "publish_news",
        &[r#""addressed""#, "1"],
    )
    .expect_code(0);
    let mut seen = serde_json::Value::Null;
    let arrived = wait_until(DELIVERY_LIMIT, || {
        let out = call(&ports, reader.id(), "pinned_seen", &[]);
        out.expect_code(0);
        seen = out.json();
        seen != serde_json::json!([])
    });
    assert!(
        arrived,
        "pinned_news never got the news\n{}",
        reader.report()
    );
    assert_eq!(
        seen,
        serde_json::json!([["addressed", 1]]),
        "{}",
        reader.report()
    );
}
