//! The benchmark harness's app (`make bench`, `tests/src/bin/netrun-bench`): the functions it
//! calls, and loops that time calls from inside a guest, where a guest-to-guest call starts and
//! ends. Times are nanoseconds of the guest's monotonic clock; timestamps shared between peers
//! are microseconds of the host's wall clock (one machine, one clock).

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use net::Bytes;

/// Answers its argument: the served side of every call scenario.
#[net::connect]
fn echo(data: Bytes) -> Bytes {
    data
}

/// The same body as `echo`, never connected: what a local call of `echo` is compared with.
#[inline(never)]
fn echo_plain(data: Bytes) -> Bytes {
    data
}

/// Sleeps `ms` milliseconds: work that takes wall time without taking a core.
#[net::connect]
fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Answers its argument after 50 milliseconds of sleep: a call slow enough for `netrun
/// bench`'s progress line.
#[net::connect]
fn slow_echo(data: Bytes) -> Bytes {
    std::thread::sleep(Duration::from_millis(50));
    data
}

thread_local! {
    static TALLY: RefCell<(u64, u64)> = const { RefCell::new((0, 0)) };
}

/// Counts the call and its argument's bytes (in this instance).
#[net::connect]
fn tally(data: Bytes) -> u64 {
    TALLY.with(|t| {
        let mut t = t.borrow_mut();
        t.0 += 1;
        t.1 += data.len() as u64;
        t.0
    })
}

/// What `tally` counted in this instance: (calls, bytes).
#[net::connect]
fn tallied() -> (u64, u64) {
    TALLY.with(|t| *t.borrow())
}

/// Traps (panics): the next call runs in a fresh instance.
#[net::connect]
fn boom() -> u32 {
    panic!("boom, as the benchmark asked")
}

fn nanos(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

fn peer(id: &str) -> net::Peer {
    net::Peer::from_id(id).unwrap_or_else(|e| panic!("{e}"))
}

/// Calls `echo` on `peer` `calls` times, one at a time, with `size` bytes, and returns how long
/// each call took. A failed call, or an answer of another size, panics with the reason.
#[net::connect]
fn time_remote(peer_id: String, calls: u32, size: u32) -> Vec<u64> {
    let target = peer(&peer_id);
    let data = Bytes::from(vec![7u8; size as usize]);
    (0..calls)
        .map(|_| {
            // The argument is the caller's before the call starts: the copy is not timed.
            let argument = data.clone();
            let started = Instant::now();
            let back = echo::on(&target, argument).unwrap_or_else(|e| panic!("{e}"));
            let took = nanos(started);
            assert_eq!(back.len(), data.len(), "echo answered another size");
            took
        })
        .collect()
}

/// Times `calls` local calls of the connected `echo` and of the plain `echo_plain`, alternately,
/// with `size` bytes: (connected, plain) nanoseconds per call.
#[net::connect]
fn time_local(calls: u32, size: u32) -> (Vec<u64>, Vec<u64>) {
    let data = Bytes::from(vec![7u8; size as usize]);
    let mut connected = Vec::with_capacity(calls as usize);
    let mut plain = Vec::with_capacity(calls as usize);
    for _ in 0..calls {
        let started = Instant::now();
        black_box(echo(black_box(data.clone())));
        connected.push(nanos(started));
        let started = Instant::now();
        black_box(echo_plain(black_box(data.clone())));
        plain.push(nanos(started));
    }
    (connected, plain)
}

/// Small calls on a connection that also carries big ones: for each of `rounds`, starts an echo
/// of `big` bytes on `peer`, times `small_calls` echoes of `small` bytes while it travels, then
/// waits for the big one. Returns the small calls' times.
#[net::connect]
fn time_mixed(peer_id: String, rounds: u32, big: u32, small_calls: u32, small: u32) -> Vec<u64> {
    let target = peer(&peer_id);
    let big_data = Bytes::from(vec![1u8; big as usize]);
    let small_data = Bytes::from(vec![2u8; small as usize]);
    let mut times = Vec::new();
    for _ in 0..rounds {
        let pending = echo::spawn(&target, big_data.clone());
        for _ in 0..small_calls {
            let started = Instant::now();
            echo::on(&target, small_data.clone()).unwrap_or_else(|e| panic!("{e}"));
            times.push(nanos(started));
        }
        let back = pending.wait().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            back.len(),
            big_data.len(),
            "the big echo answered another size"
        );
    }
    times
}

/// Starts `calls` echoes of `size` bytes on `peer` at once and waits for all: the wall time, in
/// nanoseconds.
#[net::connect]
fn time_concurrent(peer_id: String, calls: u32, size: u32) -> u64 {
    let target = peer(&peer_id);
    let data = Bytes::from(vec![3u8; size as usize]);
    let started = Instant::now();
    let pending: Vec<net::Pending<Bytes>> = (0..calls)
        .map(|_| echo::spawn(&target, data.clone()))
        .collect();
    for result in net::wait_all(pending) {
        let back = result.unwrap_or_else(|e| panic!("echo failed: {e}"));
        assert_eq!(back.len(), data.len(), "echo answered another size");
    }
    nanos(started)
}

/// Spreads `calls` calls of `work(ms)` over `peers` (round robin), all started at once, and
/// returns the wall time until the last answered, in nanoseconds.
#[net::connect]
fn time_parallel(peer_ids: Vec<String>, calls: u32, ms: u64) -> u64 {
    let peers: Vec<net::Peer> = peer_ids.iter().map(|id| peer(id)).collect();
    let started = Instant::now();
    let pending: Vec<net::Pending<u64>> = (0..calls as usize)
        .map(|i| work::spawn(&peers[i % peers.len()], ms))
        .collect();
    for result in net::wait_all(pending) {
        result.unwrap_or_else(|e| panic!("work failed: {e}"));
    }
    nanos(started)
}

/// Microseconds since the Unix epoch, by the host's clock.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

/// Event `tick`: the time it was triggered; every subscriber gets it.
#[net::event("tick")]
fn tick(sent_us: u64) -> u64 {
    sent_us
}

/// Triggers `tick` `times` times, `gap_ms` apart; returns when it sent each.
#[net::connect]
fn fire(times: u32, gap_ms: u64) -> Vec<u64> {
    (0..times)
        .map(|_| {
            let sent = now_us();
            tick(sent);
            std::thread::sleep(Duration::from_millis(gap_ms));
            sent
        })
        .collect()
}

thread_local! {
    static DELIVERED: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Subscribed to the hubs of this host: notes when each tick was sent and when it arrived.
#[net::subscribe("tick", hubs_only = true, on_host = true)]
fn on_tick(sent_us: u64) {
    let arrived = now_us();
    DELIVERED.with(|d| d.borrow_mut().push((sent_us, arrived)));
}

/// The ticks this subscriber got: (sent, arrived), microseconds since the Unix epoch.
#[net::connect]
fn deliveries() -> Vec<(u64, u64)> {
    DELIVERED.with(|d| d.borrow().clone())
}
