//! A hostile app, for the tests of limits, traps and the sandbox: each function misbehaves in
//! one way a peer must survive. Built as `target/apps/sandbox_probe.wasm`.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Loops forever: only the deadline (or fuel) stops it.
#[net::connect]
fn spin() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates a MiB at a time, forever: only the memory limit stops it.
#[net::connect]
fn alloc_forever() -> u64 {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1; 1 << 20]);
        black_box(&held);
    }
}

/// Recurses without end: the stack overflows.
#[net::connect]
fn recurse_forever() -> u64 {
    fn deeper(n: u64) -> u64 {
        let frame = black_box([n; 32]);
        // Never true (the stack runs out long before), but the compiler cannot know.
        if frame[0] == u64::MAX {
            return 0;
        }
        deeper(frame[0] + 1) + frame[31]
    }
    deeper(0)
}

/// Panics with `message`.
#[net::connect]
fn panic_with(message: String) -> u64 {
    panic!("{message}")
}

/// Works (spins) for `ms` milliseconds, then returns it.
#[net::connect]
fn busy(ms: u64) -> u64 {
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(ms) {
        black_box(&started);
    }
    ms
}

/// Spins on the last peer of `peers`, reached through the others in order: `spin_via([B, C])`
/// on A calls `spin_via([C])` on B, which calls `spin` on C. With no peers, spins here. A
/// failure on the way panics with its message, so the caller sees where the chain broke.
#[net::connect]
fn spin_via(peers: Vec<String>) -> u64 {
    let Some((next, rest)) = peers.split_first() else {
        return spin();
    };
    let next = net::Peer::from_id(next).unwrap_or_else(|e| panic!("{e}"));
    spin_via::on(&next, rest.to_vec()).unwrap_or_else(|e| panic!("{e}"))
}

thread_local! {
    static ANNOUNCED: Cell<u64> = const { Cell::new(0) };
}

/// Counts itself, prints `sleep_announced N started` (N: how many times this instance ran it,
/// this one included), then sleeps `ms` milliseconds and returns N. Tests wait for the line
/// to know the call is running, and read N to know how often it ran.
#[net::connect]
fn sleep_announced(ms: u64) -> u64 {
    let n = increment(&ANNOUNCED);
    println!("sleep_announced {n} started");
    std::thread::sleep(Duration::from_millis(ms));
    n
}

/// Calls `relay([])` (which answers the id of the peer that runs it) on any member of `group`,
/// `times` times in a row, and returns the id of the member that served each call, as the
/// runtime reported it. A call that fails panics with its error.
#[net::connect]
fn serve_any(group: String, times: u32) -> Vec<String> {
    (0..times)
        .map(|_| {
            let served = relay::any(&group, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                served.value,
                vec![served.peer.id.clone()],
                "served by another peer"
            );
            served.peer.id
        })
        .collect()
}

/// Runs `busy(ms)` on every peer of `peers` at once (started calls, then waited for all) and
/// returns the wall time that took, in milliseconds: about `ms` when the calls ran in
/// parallel, `ms` times their number when they did not.
#[net::connect]
fn busy_all(peers: Vec<String>, ms: u64) -> u64 {
    let started = Instant::now();
    let pending: Vec<net::Pending<u64>> = peers
        .iter()
        .map(|id| {
            let peer = net::Peer::from_id(id).unwrap_or_else(|e| panic!("{e}"));
            busy::spawn(&peer, ms)
        })
        .collect();
    for result in net::wait_all(pending) {
        result.unwrap_or_else(|e| panic!("busy failed: {e}"));
    }
    started.elapsed().as_millis() as u64
}

/// Works (spins) for `ms` milliseconds; returns when it started and ended, in microseconds
/// since the Unix epoch, so that tests can see which calls overlapped.
#[net::connect]
fn busy_span(ms: u64) -> (u64, u64) {
    let start = now_us();
    busy(ms);
    (start, now_us())
}

/// Microseconds since the Unix epoch, by the host's clock (the same for every peer here).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64
}

thread_local! {
    static SLEEPS: Cell<u64> = const { Cell::new(0) };
}

/// Sleeps (without working) for `ms` milliseconds. Returns when it started and ended, in
/// microseconds since the Unix epoch, and how many `sleep_span` calls this instance has run,
/// this one included: with several workers, calls that overlap ran in different instances, and
/// each instance counts its own.
#[net::connect]
fn sleep_span(ms: u64) -> (u64, u64, u64) {
    let start = now_us();
    let count = increment(&SLEEPS);
    std::thread::sleep(Duration::from_millis(ms));
    (start, now_us(), count)
}

/// Starts `sleep_span(ms)` `calls` times at once on `peer` (started calls: siblings of one
/// chain), waits for all, and returns their spans in the order they were started.
#[net::connect]
fn sleep_spans_on(peer: String, calls: u32, ms: u64) -> Vec<(u64, u64, u64)> {
    let peer = net::Peer::from_id(&peer).unwrap_or_else(|e| panic!("{e}"));
    let pending: Vec<net::Pending<(u64, u64, u64)>> =
        (0..calls).map(|_| sleep_span::spawn(&peer, ms)).collect();
    net::wait_all(pending)
        .into_iter()
        .map(|result| result.unwrap_or_else(|e| panic!("sleep_span failed: {e}")))
        .collect()
}

/// Prints `lines` lines, each `len` times `letter`, handing every line to the peer in pieces
/// of 16 bytes with a millisecond's pause between them: lines that parallel workers print at
/// the same time would interleave, unless the peer keeps each line whole.
#[net::connect]
fn print_lines(letter: String, lines: u32, len: u32) -> u32 {
    use std::io::Write;
    let line = letter.repeat(len as usize);
    let mut out = std::io::stdout();
    for _ in 0..lines {
        for piece in line.as_bytes().chunks(16) {
            out.write_all(piece).expect("stdout");
            out.flush().expect("stdout");
            std::thread::sleep(Duration::from_millis(1));
        }
        out.write_all(b"\n").expect("stdout");
        out.flush().expect("stdout");
    }
    lines
}

/// Reads one line of stdin: what it read (empty at end of input), or what failed, prefixed
/// with `error: `. A peer started without `--entry` gives its guest no stdin.
#[net::connect]
fn read_stdin_line() -> String {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) => line,
        Err(e) => format!("error: {e}"),
    }
}

/// Reads a file; what failed, if it did, prefixed with `error: `.
#[net::connect]
fn read_file(path: String) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| format!("error: {e}"))
}

/// Writes a file; panics (a remote error) with the reason if it cannot.
#[net::connect]
fn write_file(path: String, text: String) {
    if let Err(e) = std::fs::write(&path, text) {
        panic!("cannot write {path}: {e}");
    }
}

/// An environment variable, if the guest can see it.
#[net::connect]
fn read_env(name: String) -> Option<String> {
    std::env::var(name).ok()
}

/// Calls `relay` on `peers[0]` with the rest and returns its answer with this peer's id
/// appended; with no peers, returns this peer's id. Callbacks and cycles are built from it.
#[net::connect]
fn relay(peers: Vec<String>) -> Vec<String> {
    let me = net::this_peer().id;
    let Some((next, rest)) = peers.split_first() else {
        return vec![me];
    };
    let next = net::Peer::from_id(next).unwrap_or_else(|e| panic!("{e}"));
    let mut answer = relay::on(&next, rest.to_vec()).unwrap_or_else(|e| panic!("{e}"));
    answer.push(me);
    answer
}

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// Increments and returns a counter held in guest state: it persists across calls and starts
/// again from 1 after the instance is replaced.
#[net::connect]
fn counter() -> u64 {
    increment(&COUNTER)
}

/// Adds one to a counter in guest state; returns the new count.
fn increment(counter: &'static std::thread::LocalKey<Cell<u64>>) -> u64 {
    counter.with(|c| {
        c.set(c.get() + 1);
        c.get()
    })
}

/// Prints 100 MiB to stdout, as 102 400 lines of 1 KiB (a line number and filler), through a
/// buffer of its own: the peer must pass it on without holding it.
#[net::connect]
fn print_flood() -> u64 {
    use std::io::Write;
    const LINES: u64 = 100 * 1024;
    let filler = "x".repeat(1024 - 10);
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    for line in 0..LINES {
        writeln!(out, "{line:08} {filler}").expect("stdout");
    }
    out.flush().expect("stdout");
    LINES
}

thread_local! {
    static ACKS: Cell<u64> = const { Cell::new(0) };
}

/// Announces this peer (the `announce` event, for subscribers on hubs).
#[net::event("announce")]
fn announce() -> String {
    net::this_peer().id
}

/// A subscriber's answer to `announce`: calls `ack` back on the hub that announced.
#[net::subscribe("announce", hubs_only = true)]
fn on_announce(hub: String) {
    let hub = net::Peer::from_id(&hub).unwrap_or_else(|e| panic!("{e}"));
    ack::on(&hub).unwrap_or_else(|e| panic!("ack on the hub failed: {e}"));
}

/// Counts an acknowledgement; returns the count.
#[net::connect]
fn ack() -> u64 {
    increment(&ACKS)
}

/// The acknowledgements counted so far.
#[net::connect]
fn acks() -> u64 {
    ACKS.with(Cell::get)
}

/// Announces this peer, then asks itself `acks` (a call to itself, through its own id) up to
/// `tries` times, 20 ms apart, until a subscriber has called `ack` back. Returns the count:
/// 0 means no callback got through while this call ran.
#[net::connect]
fn announce_and_wait(tries: u32) -> u64 {
    let me = net::Peer::from_id(&net::this_peer().id).unwrap_or_else(|e| panic!("{e}"));
    announce();
    for _ in 0..tries {
        let count = acks::on(&me).unwrap_or_else(|e| panic!("acks on myself failed: {e}"));
        if count > 0 {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    0
}

/// Calls `spin` on `peer`: from another peer, a callback that never returns.
#[net::connect]
fn spin_on(peer: String) -> u64 {
    let peer = net::Peer::from_id(&peer).unwrap_or_else(|e| panic!("{e}"));
    spin::on(&peer).unwrap_or_else(|e| panic!("spin on the caller failed: {e}"))
}

/// Asks the first other peer on this host to call `spin` back here: the callback runs nested
/// in this entry's instance, and must stop at the deadline although entries have none.
#[net::entry]
fn spin_callback() -> Result<(), String> {
    let me = net::this_peer().id;
    let other = net::peers(net::PeerQuery::default())
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no other peer on this host")?;
    let answer = spin_on::on(&other, me).map_err(|e| e.to_string())?;
    Err(format!("spin answered {answer}"))
}
