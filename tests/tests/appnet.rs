//! A mixed cluster: real Python app-net peers (the package from PyPI) and netrun peers find and
//! call each other on loopback, through app-net's tagged connections; app-net's flags and
//! remote errors cross both ways; the original's parity values go through `pass_through` both
//! ways; a cluster secret turns app-net off unless `--appnet` forces it.

use netrun_tests::appnet::{PythonPeer, python, raw_request};
use netrun_tests::{Ports, TestPeer, app, call, info, netrun, run_entry};
use serde_json::{Value, json};

/// The original app-net test's values (its `test_connect_decorator`).
const PARITY: &str = r#"[{"testing": "value"}, {"1": 1}, {"1": {"2": 3}}, [1, "1", 1.0],
    "This is a string", "", null, true, false, 1.0, 1]"#;

/// The group every peer of these tests is in (app-net lists only its own group by default).
const GROUP: &str = "mixed";

/// A Python peer's view of the netrun peer on `TARGET_PORT`: what discovery found, tagged and
/// attribute calls, a guest panic, a missing connection, and the parity values; one JSON line.
const PYTHON_CALLS_NETRUN: &str = r#"
import json, os
target_port = int(os.environ["TARGET_PORT"])
found = net.peers(on_host=True, refresh=True)
peers = [p for p in found["peers"].values() if p.port == target_port]
out = {"found": [[p.host, p.port, p.group, p.hub] for p in peers]}
target = peers[0]

@net.connect("tagged_name")
def tagged(x):
    return x

@net.connect("panic_with")
def panic_with(message):
    return message

# app-net's client sends its peer= keyword as JSON: an address, not a Peer object.
address = (target.host, target.port)
out["tagged"] = [tagged(7, peer=address), target.tagged_name(7)]
out["add"] = target.add(2, 3)
try:
    panic_with("boom from python", peer=address)
    out["panic"] = None
except Exception as e:
    out["panic"] = str(e)
try:
    net.Peer().execute(target, "no_such_function", (), {})
    out["missing"] = None
except Exception as e:
    out["missing"] = str(e)
out["parity"] = [target.pass_through(v) for v in json.loads(os.environ["PARITY"])]
print("result " + json.dumps(out))
"#;

/// A Python peer offering two tagged connections, one of which raises.
const PYTHON_SERVES: &str = r#"
@net.connect("greet")
def greet(name):
    return "hello, %s, from python" % name

@net.connect("explode")
def explode(why):
    raise ValueError("python says " + why)
"#;

fn group_env() -> [(&'static str, &'static str); 1] {
    [("NET_GROUP", GROUP)]
}

/// The JSON after `result ` in what a script printed.
fn result_of(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("result "))
        .unwrap_or_else(|| panic!("the script printed no result line:\n{stdout}"));
    serde_json::from_str(line).expect("the result line is JSON")
}

#[test]
fn a_python_peer_finds_and_calls_a_netrun_peer() {
    let ports = Ports::new();
    let hub = [("NET_GROUP", GROUP), ("NET_IS_HUB", "1")];
    let peer = TestPeer::probe(&ports, &hub);
    let target = peer.port().to_string();
    let env = [
        ("NET_GROUP", GROUP),
        ("TARGET_PORT", target.as_str()),
        ("PARITY", PARITY),
    ];
    let out = python(&ports, PYTHON_CALLS_NETRUN, &env);
    out.expect_code(0);
    let result = result_of(&out.stdout);
    assert_eq!(
        result["found"],
        json!([["127.0.0.1", peer.port(), GROUP, true]]),
        "net.peers() lists the netrun peer with its group and hub flag\n{out}"
    );
    assert_eq!(
        result["tagged"],
        json!([8, 8]),
        "the tagged function ran in the guest"
    );
    assert_eq!(
        result["add"],
        json!(5),
        "the attribute app-net made from info"
    );
    let panic = result["panic"].as_str().expect("the panic raised");
    assert!(
        panic.contains("RemoteError") && panic.contains("boom from python"),
        "a guest panic is app-net's RemoteError with the guest's message: {panic}"
    );
    let missing = result["missing"].as_str().expect("the missing one raised");
    assert!(
        missing.contains("Peer does not have the connection you are requesting"),
        "INVALID_CONNECTION: {missing}"
    );
    let parity: Value = serde_json::from_str(PARITY).unwrap();
    assert_eq!(result["parity"], parity, "pass_through from Python\n{out}");
}

#[test]
fn netrun_finds_and_calls_a_python_peer() {
    let ports = Ports::new();
    let py = PythonPeer::start(&ports, PYTHON_SERVES, &group_env());
    let id = py.id(GROUP);

    let listed = netrun(&ports, &["peers", "--on-host", "--json"], &[]);
    listed.expect_code(0);
    assert_eq!(
        listed.json()["peers"][&id],
        json!({"host": "127.0.0.1", "port": py.port(), "group": GROUP, "hub": false, "appnet": true}),
        "netrun peers lists the Python peer, marked as app-net\n{listed}\n{}",
        py.report()
    );
    let table = netrun(&ports, &["peers", "--on-host"], &[]);
    let row = table.stdout.lines().find(|l| l.starts_with(&id));
    assert!(
        row.is_some_and(|r| r.trim_end().ends_with("app-net")),
        "{table}"
    );

    let greeted = call(&ports, &id, "greet", &[r#""bob""#]);
    greeted.expect_code(0);
    assert_eq!(greeted.json(), json!("hello, bob, from python"));

    let raised = call(&ports, &id, "explode", &[r#""now""#]);
    raised.expect_code(1).expect_stderr(&[
        "explode failed on peer",
        "app-net error",
        "ValueError: python says now",
    ]);
    let missing = call(&ports, &id, "no_such_function", &[]);
    missing.expect_code(1).expect_stderr(&[
        "no connection \"no_such_function\"",
        "INVALID_CONNECTION",
        "greet",
    ]);
    let null = call(&ports, &id, "null", &[]);
    null.expect_code(0);
    assert_eq!(null.json(), json!("NULL"));

    let described = info(&ports, &id);
    let offered: Vec<&str> = described["connections"]
        .as_array()
        .expect("app-net's info lists connections")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        offered.contains(&"greet") && offered.contains(&"explode"),
        "{described}"
    );

    let parity: Vec<Value> = serde_json::from_str(PARITY).unwrap();
    for value in parity {
        let sent = value.to_string();
        let out = call(&ports, &id, "pass_through", &[&sent]);
        out.expect_code(0);
        assert_eq!(
            out.json(),
            value,
            "pass_through on the Python peer changed {sent}"
        );
    }
}

#[test]
fn app_net_requests_are_read_whole_and_answered_in_ascii() {
    let ports = Ports::new();
    let peer = TestPeer::probe(&ports, &[]);
    let long = "é".repeat(3000);
    let request = json!({"connection": "echo", "args": [long], "kwargs": {"peer": ["127.0.0.1", 1], "time_out": 5}});
    let text = request.to_string();
    let (first, rest) = text.as_bytes().split_at(700);
    let answer = raw_request(peer.port(), &[first, rest]);
    assert!(answer.is_ascii(), "app-net decodes replies as ASCII");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap(), json!(long));

    let keyword = json!({"connection": "add", "args": [40], "kwargs": {"b": 2}});
    let answer = raw_request(peer.port(), &[keyword.to_string().as_bytes()]);
    assert_eq!(answer, "42", "keyword arguments fill parameters by name");

    let unknown = json!({"connection": "add", "args": [1], "kwargs": {"c": 2}});
    let answer = raw_request(peer.port(), &[unknown.to_string().as_bytes()]);
    let packet: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(packet["payload"], "error", "{answer}");
    assert!(
        packet["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("unexpected keyword argument 'c'")),
        "{answer}"
    );
    // Still a netrun peer for netrun.
    call(&ports, peer.id(), "add", &["1", "2"]).expect_code(0);
}

#[test]
fn a_cluster_secret_turns_app_net_off_unless_forced() {
    let ports = Ports::new();
    let secret = [("NET_SECRET", "appnet-test-secret")];
    let request = json!({"connection": "add", "args": [1, 2], "kwargs": {}}).to_string();

    let closed = TestPeer::probe(&ports, &secret);
    let answer = raw_request(closed.port(), &[request.as_bytes()]);
    assert!(
        answer.contains("does not serve app-net requests"),
        "a peer with a secret refuses app-net: {answer}"
    );
    let described = netrun(&ports, &["info", closed.id()], &secret);
    described.expect_code(0);
    assert_eq!(described.json()["appnet"], json!(false));

    let forced = TestPeer::start(
        &ports,
        &netrun_tests::app("core_probe"),
        &["--appnet"],
        &secret,
    );
    assert_eq!(raw_request(forced.port(), &[request.as_bytes()]), "3");
    assert!(
        forced.stderr().contains("--appnet with a cluster secret"),
        "forcing it warns\n{}",
        forced.report()
    );
    let described = netrun(&ports, &["info", forced.id()], &secret);
    assert_eq!(described.json()["appnet"], json!(true));

    let off = TestPeer::start(
        &ports,
        &netrun_tests::app("core_probe"),
        &["--no-appnet"],
        &[],
    );
    let answer = raw_request(off.port(), &[request.as_bytes()]);
    assert!(
        answer.contains("does not serve app-net requests"),
        "{answer}"
    );
    assert_eq!(info(&ports, off.id())["appnet"], json!(false));
}

#[test]
fn a_guest_calls_a_python_peer_with_its_typed_stubs() {
    let ports = Ports::new();
    let source = r#"
@net.connect("tagged_name")
def tagged(x):
    return x * 10

@net.connect("panic_with")
def panic_with(message):
    raise RuntimeError("python: " + message)
"#;
    let py = PythonPeer::start(&ports, source, &[]);
    let out = run_entry(&ports, &app("core_probe"), "call_appnet_peers", &[]);
    out.expect_code(0);
    let expected = format!(
        "app-net peer 127.0.0.1:{} -> None: tagged_name(7) = 70, started tagged_name(8) = 80, by id tagged_name(9) = 90",
        py.port()
    );
    assert!(
        out.stdout.contains(&expected),
        "net::peers() marks the Python peer and the stub calls it in JSON\n{out}\n{}",
        py.report()
    );
    assert!(
        out.stdout.contains("app-net error:")
            && out.stdout.contains("RuntimeError: python: from the guest"),
        "a Python exception is the guest's remote error\n{out}"
    );
}

/// Publishes three events with `publish(n)`, then checks that `output` (the subscriber's)
/// shows `line(n)` once for each: waits for the last, then a little longer for duplicates.
fn each_event_once(
    publish: impl Fn(u32),
    output: impl Fn() -> String,
    line: impl Fn(u32) -> String,
    report: impl Fn() -> String,
) {
    for n in 1..=3 {
        publish(n);
    }
    let last = line(3);
    let arrived = netrun_tests::wait_until(std::time::Duration::from_secs(20), || {
        output().contains(&last)
    });
    assert!(arrived, "the subscriber got no {last:?}\n{}", report());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let seen = output();
    for n in 1..=3 {
        let times = seen.lines().filter(|l| l.trim() == line(n)).count();
        assert_eq!(
            times,
            1,
            "{:?} arrived {times} times\n{}",
            line(n),
            report()
        );
    }
}

#[test]
fn a_python_subscriber_gets_every_event_of_a_netrun_hub_once() {
    let ports = Ports::new();
    let env = [("NET_GROUP", GROUP), ("NET_IS_HUB", "1")];
    let hub = TestPeer::start(&ports, &app("events_probe"), &[], &env);
    let hub_port = hub.port().to_string();
    let source = r#"
import os
hub_port = int(os.environ["HUB_PORT"])
found = net.peers(on_host=True, refresh=True)
hubs = [p for p in found["peers"].values() if p.port == hub_port]
assert hubs, "the netrun hub was not found"

@net.subscribe("news", peers=hubs)
def on_news(headline, n):
    print("news %s %d" % (headline, n), flush=True)
"#;
    let py = PythonPeer::start(
        &ports,
        source,
        &[("NET_GROUP", GROUP), ("HUB_PORT", hub_port.as_str())],
    );
    let subscribers = netrun_tests::subscription_list(&info(&ports, hub.id()), "subscribers");
    let address = format!("127.0.0.1:{}", py.port());
    assert!(
        subscribers.contains(&("news".into(), address, "__main__.on_news".into())),
        "the hub lists the Python subscriber: {subscribers:?}\n{}",
        py.report()
    );
    each_event_once(
        |n| {
            let n = n.to_string();
            call(&ports, hub.id(), "publish_news", &[r#""hello""#, &n]).expect_code(0);
        },
        || py.stdout(),
        |n| format!("news hello {n}"),
        || format!("{}\n{}", py.report(), hub.report()),
    );
}

#[test]
fn a_netrun_subscriber_gets_every_event_of_a_python_hub_once() {
    let ports = Ports::new();
    let source = r#"
@net.event("news")
def news(headline, n):
    return (headline, n), {}

@net.connect("publish")
def publish(headline, n):
    news(headline, n)
    return n
"#;
    let py = PythonPeer::start(&ports, source, &[("NET_GROUP", "press")]);
    let id = py.id("press");
    // events_probe's press_news subscribes to "news" on the peers of group press.
    let subscriber = TestPeer::start(&ports, &app("events_probe"), &[], &[]);
    let (registered, last) =
        netrun_tests::wait_for_info(&ports, &id, std::time::Duration::from_secs(20), |info| {
            info["subscriptions"] == json!(["news"])
        });
    assert!(
        registered,
        "the netrun peer subscribed on the Python hub: {last}\n{}",
        subscriber.report()
    );
    // Two more registration passes (every 2 s): app-net would keep a second registration.
    std::thread::sleep(std::time::Duration::from_millis(4500));
    each_event_once(
        |n| {
            let n = n.to_string();
            call(&ports, &id, "publish", &[r#""hi""#, &n]).expect_code(0);
        },
        || subscriber.stdout(),
        |n| format!("press: hi {n}"),
        || format!("{}\n{}", subscriber.report(), py.report()),
    );
}
