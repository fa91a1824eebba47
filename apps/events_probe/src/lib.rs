//! Test fixture for what the original examples do not show: custom flags and their handlers,
//! a tagged call refused for its types, a subscriber whose handler panics, events whose
//! handlers take two arguments (`tick`, with slow handlers; `news`), and subscriptions
//! filtered by group and by explicit address. Built as `target/apps/events_probe.wasm`; the
//! integration tests run it.

use net::{PeerQuery, PeerQueryExt};

/// Runs here, on the caller's side, when a function called from here answers `BUSY`; what it
/// returns becomes the call's result.
#[net::flag("BUSY")]
fn busy(function: String, peer: net::Peer) -> String {
    net::log::info(&format!(
        "{function} on {} answered BUSY",
        peer.display_name()
    ));
    "BUSY handled".to_string()
}

/// Answers with the `BUSY` flag.
#[net::connect]
fn busy_flag() -> Result<String, net::Flag> {
    Err(net::Flag::new("BUSY"))
}

/// Answers with a flag no module declares a handler for.
#[net::connect]
fn odd_flag() -> Result<String, net::Flag> {
    Err(net::Flag::new("UNDECLARED"))
}

/// Answers `BUSY` where a number is expected: the `BUSY` handler returns a `String`, so the
/// caller must refuse to use it.
#[net::connect]
fn busy_count() -> Result<u32, net::Flag> {
    Err(net::Flag::new("BUSY"))
}

/// The first other peer of this peer's group on this host.
fn neighbour() -> Result<net::Peer, String> {
    let me = net::this_peer();
    let query = PeerQuery::default().on_host().in_group(me.group.clone());
    net::peers(query)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or_else(|| format!("no other peer in group {} on this host", me.group))
}

/// Calls `busy_flag` and `odd_flag` on a neighbour: prints `BUSY handled`, then the error that
/// names `UNDECLARED`.
#[net::entry]
fn flag_demo() -> Result<(), String> {
    let peer = neighbour()?;
    println!("{}", busy_flag::on(&peer).map_err(|e| e.to_string())?);
    match odd_flag::on(&peer) {
        Ok(value) => Err(format!("odd_flag answered {value:?} instead of failing")),
        Err(e) => {
            println!("{e}");
            Ok(())
        }
    }
}

/// Calls `busy_count` on a neighbour and prints the error: the handler's type does not fit.
#[net::entry]
fn flag_type_demo() -> Result<(), String> {
    match busy_count::on(&neighbour()?) {
        Ok(value) => Err(format!("busy_count answered {value} instead of failing")),
        Err(e) => {
            println!("{e}");
            Ok(())
        }
    }
}

/// Tagged like `app_v1`'s `connected_function`, with other types (`u32 -> u32`).
#[net::connect("myTaggedFunction")]
fn tagged_number(x: u32) -> u32 {
    x + 1
}

/// Calls `myTaggedFunction` with 7 on the first `app_v1` peer of this host and prints the
/// error: "contract mismatch", with both signatures.
#[net::entry]
fn mismatch_demo() -> Result<(), String> {
    let peers = net::peer_group("app_v1").map_err(|e| e.to_string())?;
    let peer = peers.first().ok_or("no app_v1 peer on this host")?;
    match tagged_number::on(peer, 7) {
        Ok(value) => Err(format!("the call answered {value} instead of failing")),
        Err(e) => {
            println!("{e}");
            Ok(())
        }
    }
}

/// Subscribes to hubs' `myEvent` and panics on `boom`: the hub and the other subscribers must
/// not notice.
#[net::subscribe("myEvent", hubs_only = true, on_host = true)]
fn fragile(message: String) {
    println!("fragile: {message}");
    if message == "boom" {
        panic!("fragile cannot take a boom");
    }
}

/// Microseconds since the Unix epoch, by the host's clock (the same for every peer here).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// Event `tick`: a sequence number, and how long each subscriber's handler is to take.
#[net::event("tick")]
fn tick(n: u32, ms: u64) -> (u32, u64) {
    (n, ms)
}

/// Triggers `tick` `count` times (numbers `0..count`), each handler to take `ms`; returns
/// `count` at once, whatever the subscribers do.
#[net::connect]
fn fire_ticks(count: u32, ms: u64) -> u32 {
    for n in 0..count {
        tick(n, ms);
    }
    count
}

/// Subscribes to hubs' `tick` (two arguments): sleeps `ms`, then prints
/// `tick N START END` (µs since the epoch), so that tests can see which deliveries overlapped.
#[net::subscribe("tick", hubs_only = true, on_host = true)]
fn slow_tick(n: u32, ms: u64) {
    let start = now_us();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("tick {n} {start} {}", now_us());
}

/// Event `news`: a headline and a number.
#[net::event("news")]
fn news(headline: String, n: u32) -> (String, u32) {
    (headline, n)
}

/// Triggers `news` once; returns `n`.
#[net::connect]
fn publish_news(headline: String, n: u32) -> u32 {
    news(headline, n);
    n
}

/// Subscribes to `news` on the peers of group `press` only; prints `press: HEADLINE N`.
#[net::subscribe("news", groups = ["press"])]
fn press_news(headline: String, n: u32) {
    println!("press: {headline} {n}");
}

thread_local! {
    static PINNED: std::cell::RefCell<Vec<(String, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Subscribes to `news` on the peer at 127.0.0.1:19990 only (the tests' pinned port), and
/// keeps what it receives for `pinned_seen` instead of printing it: any events_probe peer
/// running while a test publishes there receives it too, and must not print.
#[net::subscribe("news", peers = ["127.0.0.1:19990"])]
fn pinned_news(headline: String, n: u32) {
    PINNED.with(|seen| seen.borrow_mut().push((headline, n)));
}

/// What `pinned_news` received, in order.
#[net::connect]
fn pinned_seen() -> Vec<(String, u32)> {
    PINNED.with(|seen| seen.borrow().clone())
}
