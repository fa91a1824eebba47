//! Test fixture for the integration tests (`tests/`): connected functions of every shape the
//! core must carry, and entries that exercise typed calls, discovery (and its cache), the peer
//! API, logging, and errors matched from the guest's side. Built to
//! `target/apps/core_probe.wasm`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use net::{Bytes, Peer, PeerQuery};

#[net::connect]
fn echo(message: String) -> String {
    message
}

#[net::connect]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[net::connect]
fn panic_with(message: String) -> String {
    panic!("{message}")
}

#[net::connect]
fn echo_bytes(data: Bytes) -> Bytes {
    data
}

#[net::connect]
fn make_bytes(len: u64) -> Bytes {
    Bytes::from(pattern(len as usize))
}

#[net::connect("tagged_name")]
fn tagged(x: u32) -> u32 {
    x + 1
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Increments a counter held in guest state: shows state persisting (and being reset).
#[net::connect]
fn counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::SeqCst) + 1
}

#[net::connect]
fn echo_str_map(v: BTreeMap<String, String>) -> BTreeMap<String, String> {
    v
}

#[net::connect]
fn echo_int_map(v: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    v
}

#[net::connect]
fn echo_nested_map(
    v: BTreeMap<String, BTreeMap<String, i64>>,
) -> BTreeMap<String, BTreeMap<String, i64>> {
    v
}

#[net::connect]
fn echo_tuple(v: (i64, String, f64)) -> (i64, String, f64) {
    v
}

#[net::connect]
fn echo_option(v: Option<i64>) -> Option<i64> {
    v
}

#[net::connect]
fn echo_bool(v: bool) -> bool {
    v
}

#[net::connect]
fn echo_f64(v: f64) -> f64 {
    v
}

#[net::connect]
fn echo_i64(v: i64) -> i64 {
    v
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The first other peer of this peer's group.
fn target() -> Result<Peer, String> {
    let group = net::this_peer().group;
    net::peer_group(&group)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no other peer in group {group}"))
}

/// Checks that a value survives the local call, the remote typed stub and remote pass_through.
fn check<T>(
    what: &str,
    value: T,
    local: fn(T) -> T,
    remote: impl Fn(T) -> Result<T, net::Error>,
    peer: &Peer,
) -> Result<(), String>
where
    T: Clone + PartialEq + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let local = local(value.clone());
    let stub = remote(value.clone()).map_err(|e| format!("{what}: typed stub failed: {e}"))?;
    let passed = peer
        .pass_through(value.clone())
        .map_err(|e| format!("{what}: pass_through failed: {e}"))?;
    if local != value || stub != value || passed != value {
        return Err(format!(
            "{what}: sent {value:?}, local {local:?}, stub {stub:?}, pass_through {passed:?}"
        ));
    }
    Ok(())
}

/// The original's round-trip test values, through typed stubs and pass_through.
#[net::entry]
fn typed_parity() -> Result<(), String> {
    let p = target()?;
    let str_map = BTreeMap::from([("testing".to_string(), "value".to_string())]);
    let int_map = BTreeMap::from([("1".to_string(), 1i64)]);
    let nested = BTreeMap::from([("1".to_string(), BTreeMap::from([("2".to_string(), 3i64)]))]);
    check(
        "str map",
        str_map,
        echo_str_map,
        |v| echo_str_map::on(&p, v),
        &p,
    )?;
    check(
        "int map",
        int_map,
        echo_int_map,
        |v| echo_int_map::on(&p, v),
        &p,
    )?;
    check(
        "nested map",
        nested,
        echo_nested_map,
        |v| echo_nested_map::on(&p, v),
        &p,
    )?;
    check(
        "tuple",
        (1i64, "1".to_string(), 1.0f64),
        echo_tuple,
        |v| echo_tuple::on(&p, v),
        &p,
    )?;
    check(
        "string",
        "This is a string".to_string(),
        echo,
        |v| echo::on(&p, v),
        &p,
    )?;
    check("empty string", String::new(), echo, |v| echo::on(&p, v), &p)?;
    check(
        "null",
        None::<i64>,
        echo_option,
        |v| echo_option::on(&p, v),
        &p,
    )?;
    check("true", true, echo_bool, |v| echo_bool::on(&p, v), &p)?;
    check("false", false, echo_bool, |v| echo_bool::on(&p, v), &p)?;
    check("float", 1.0f64, echo_f64, |v| echo_f64::on(&p, v), &p)?;
    check("int", 1i64, echo_i64, |v| echo_i64::on(&p, v), &p)?;
    println!("typed parity ok: 11 values");
    Ok(())
}

/// 8 MiB each way, checked byte for byte.
#[net::entry]
fn big_payload() -> Result<(), String> {
    let p = target()?;
    let size = 8 * 1024 * 1024;
    let data = Bytes::from(pattern(size));
    let back = echo_bytes::on(&p, data.clone()).map_err(|e| format!("echo_bytes: {e}"))?;
    if back != data {
        return Err(format!(
            "echo_bytes: {} bytes came back different",
            back.len()
        ));
    }
    let made = make_bytes::on(&p, size as u64).map_err(|e| format!("make_bytes: {e}"))?;
    if made.as_slice() != data.as_slice() {
        return Err(format!(
            "make_bytes: got {} bytes, not the pattern",
            made.len()
        ));
    }
    println!("8 MiB round trip ok");
    Ok(())
}

/// Large and small byte strings among other fields: the large ones travel beside the value.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Parcel {
    name: String,
    first: Bytes,
    small: Bytes,
    second: Bytes,
    count: u32,
}

/// The parcel with its two large byte strings swapped and its count one more.
#[net::connect]
fn swap_parcel(parcel: Parcel) -> Parcel {
    Parcel {
        first: parcel.second,
        second: parcel.first,
        count: parcel.count + 1,
        ..parcel
    }
}

/// Byte strings of 64 KiB and more, and small ones, both ways, through every kind of call
/// (plain, started and waited for, any member of a group, the `pass_through` built-in),
/// checked byte for byte.
#[net::entry]
fn blobs_both_ways() -> Result<(), String> {
    let p = target()?;
    let group = net::this_peer().group;
    let parcel = Parcel {
        name: "parcel".into(),
        first: Bytes::from(pattern(64 * 1024)),
        small: Bytes::from(vec![1, 2, 3]),
        second: Bytes::from(pattern(300_001).into_iter().rev().collect::<Vec<_>>()),
        count: 1,
    };
    let swapped = swap_parcel(parcel.clone());
    let check = |how: &str, back: Result<Parcel, net::Error>| match back {
        Ok(back) if back == swapped => Ok(()),
        Ok(back) => Err(format!("{how}: came back different: {back:?}")),
        Err(e) => Err(format!("{how}: {e}")),
    };
    check("a call", swap_parcel::on(&p, parcel.clone()))?;
    check(
        "a started call",
        swap_parcel::spawn(&p, parcel.clone()).wait(),
    )?;
    check(
        "a call of any member",
        swap_parcel::any(&group, parcel.clone()).map(|served| served.value),
    )?;
    let big = Bytes::from(pattern(200_000));
    match p.pass_through(big.clone()) {
        Ok(back) if back == big => {}
        other => return Err(format!("pass_through: {other:?}")),
    }
    println!("blobs both ways ok");
    Ok(())
}

fn ids(peers: Result<Vec<Peer>, net::Error>) -> Result<String, String> {
    let mut ids: Vec<String> = peers
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    Ok(ids.join(","))
}

/// Discovery from the guest's side: every peer, this peer's group, hubs.
#[net::entry]
fn discover() -> Result<(), String> {
    let on_host = PeerQuery {
        on_host: true,
        ..Default::default()
    };
    println!("all: {}", ids(net::peers(on_host.clone()))?);
    println!("group: {}", ids(net::peer_group(&net::this_peer().group))?);
    println!(
        "hubs: {}",
        ids(net::peers(PeerQuery {
            hubs_only: true,
            ..on_host
        }))?
    );
    Ok(())
}

/// Typed stubs against the app-net (Python) peers on this host: `tagged_name(7)`, a started
/// `tagged_name(8)`, `tagged_name(9)` on the peer made from its id, and `panic_with`, which a
/// Python peer may offer under the same tags.
#[net::entry]
fn call_appnet_peers() -> Result<(), String> {
    let query = PeerQuery {
        on_host: true,
        refresh: true,
        ..Default::default()
    };
    let found = net::peers(query).map_err(|e| e.to_string())?;
    let appnet: Vec<Peer> = found.into_iter().filter(|p| p.appnet).collect();
    if appnet.is_empty() {
        return Err("no app-net peer on this host".into());
    }
    for p in appnet {
        let tagged = tagged::on(&p, 7).map_err(|e| format!("tagged_name: {e}"))?;
        let spawned = tagged::spawn(&p, 8)
            .wait()
            .map_err(|e| format!("tagged_name started: {e}"))?;
        // Made from its id, the peer is not known to be app-net's: the SDK learns it.
        let by_id = Peer::from_id(&p.id).map_err(|e| e.to_string())?;
        let learned = tagged::on(&by_id, 9).map_err(|e| format!("tagged_name by id: {e}"))?;
        println!(
            "app-net peer {}: tagged_name(7) = {tagged}, started tagged_name(8) = {spawned}, by id tagged_name(9) = {learned}",
            p.display_name()
        );
        match panic_with::on(&p, "from the guest".into()) {
            Err(e) => println!("app-net error: {e}"),
            Ok(v) => return Err(format!("panic_with returned {v:?}")),
        }
    }
    Ok(())
}

/// Remote errors as the guest sees them.
#[net::entry]
fn remote_errors() -> Result<(), String> {
    let p = target()?;
    match p.call::<_, ()>("no_such_function", ()) {
        Err(e) => println!("missing: {e}"),
        Ok(()) => return Err("calling no_such_function succeeded".into()),
    }
    match panic_with::on(&p, "remote boom".into()) {
        Err(e) => println!("panic: {e}"),
        Ok(v) => return Err(format!("panic_with returned {v:?}")),
    }
    Ok(())
}

#[net::entry]
fn fail() -> Result<(), String> {
    Err("entry failed on purpose".into())
}

#[net::entry]
fn whoami() {
    println!("me: {}", net::this_peer().id);
}

/// The SDK's peer API from the guest's side, against the first other peer of this peer's
/// group: `peer.info()`, a call by name, and a log line at each level (debug shows only with
/// `NET_DEV`).
#[net::entry]
fn peer_api() -> Result<(), String> {
    net::log::debug("peer_api: a debug line");
    net::log::info("peer_api: an info line");
    net::log::warn("peer_api: a warning line");
    net::log::error("peer_api: an error line");
    let p = target()?;
    let info = p.info().map_err(|e| format!("info: {e}"))?;
    println!(
        "info: {} {} hub={} offers add={} events={}",
        info.tag,
        info.group,
        info.hub,
        info.connections.iter().any(|c| c == "add"),
        info.events.len()
    );
    let sum: i64 = p
        .call("add", (2i64, 3i64))
        .map_err(|e| format!("call: {e}"))?;
    println!("call add(2, 3): {sum}");
    Ok(())
}

/// Discovery's cache and `.refresh()`: lists the other peers, waits for a line on stdin (the
/// test starts another peer meanwhile), then lists them again from the cache and with a
/// rescan. Prints `before: IDS`, `cached: IDS`, `refreshed: IDS`.
#[net::entry]
fn refresh_demo() -> Result<(), String> {
    use net::PeerQueryExt;
    println!("before: {}", ids(net::peers(PeerQuery::default()))?);
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    println!("cached: {}", ids(net::peers(PeerQuery::default()))?);
    println!(
        "refreshed: {}",
        ids(net::peers(PeerQuery::default().refresh()))?
    );
    Ok(())
}

/// Reports which `net::Error` variant each failing call matched, one line each, or fails
/// naming what came instead. Needs a core_probe peer in this peer's group, and two peer ids in
/// its environment (granted with `--env`): `NETRUN_DEAD_PEER` (nobody listens there) and
/// `NETRUN_SILENT_PEER` (accepts connections and never answers).
#[net::entry]
fn match_errors() -> Result<(), String> {
    let env = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let p = target()?;
    match net::Peer::from_id(&env("NETRUN_SILENT_PEER")?)
        .map_err(|e| e.to_string())?
        .call::<_, String>("echo", ("x".to_string(),))
    {
        Err(net::Error::Timeout {
            function, after_ms, ..
        }) => println!("Timeout: {function} after {after_ms} ms"),
        other => return Err(format!("silent peer: expected Timeout, got {other:?}")),
    }
    match net::Peer::from_id(&env("NETRUN_DEAD_PEER")?)
        .map_err(|e| e.to_string())?
        .call::<_, String>("echo", ("x".to_string(),))
    {
        Err(net::Error::PeerUnreachable { peer, .. }) => println!("PeerUnreachable: {peer}"),
        other => {
            return Err(format!(
                "dead peer: expected PeerUnreachable, got {other:?}"
            ));
        }
    }
    // A peer whose id is not one: refused by the host before anything is sent.
    let bogus = Peer {
        id: "not a peer id".to_string(),
        ..p.clone()
    };
    match bogus.call::<_, String>("echo", ("x".to_string(),)) {
        Err(net::Error::InvalidPeerId { id, .. }) => println!("InvalidPeerId: {id}"),
        other => return Err(format!("bogus id: expected InvalidPeerId, got {other:?}")),
    }
    // `add` takes two i64; a String and an i64 do not decode as that.
    match p.call::<_, i64>("add", ("two".to_string(), 3i64)) {
        Err(net::Error::BadArguments { function, .. }) => println!("BadArguments: {function}"),
        other => {
            return Err(format!(
                "add(\"two\", 3): expected BadArguments, got {other:?}"
            ));
        }
    }
    // 64 KiB of arguments, beyond the `--max-frame` the test gives this peer.
    match echo_bytes::on(&p, Bytes::from(pattern(64 * 1024))) {
        Err(net::Error::FrameTooLarge { size, max }) => {
            println!("FrameTooLarge: {size} > {max}")
        }
        other => {
            let other = other.map(|b| b.len());
            return Err(format!("64 KiB: expected FrameTooLarge, got {other:?}"));
        }
    }
    Ok(())
}
