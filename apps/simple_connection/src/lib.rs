//! The original app-net example `simple_connection`, ported to netrun.
//!
//! In Python, `app.py` decorated `connected_function` with `@net.connect()`; `peer1.py` imported
//! the app and looped forever; `peer2.py` took the first peer of its group on this host and called
//! `connected_function("My Message!", peer=...)`, which printed the message on peer1.
//!
//! Here the app is this crate, compiled to `target/apps/simple_connection.wasm`, and both peers
//! run the same module: there is no `peer1.py`, because serving is what `netrun` does by default,
//! and `peer2.py` became the entry point `peer2`:
//!
//! ```text
//! netrun target/apps/simple_connection.wasm                      # peer1: serves
//! netrun run target/apps/simple_connection.wasm --entry peer2    # peer2: calls peer1
//! ```
//!
//! What changes for a reader of the Python version:
//!
//! - `@net.connect()` is `#[net::connect]`. Calling the function normally still runs it here;
//!   the `peer=` keyword became a generated function, `connected_function::on(&peer, …)`.
//! - A remote failure is not an exception but an `Err(net::Error)` the caller must handle (here
//!   it is handed back to `netrun run`, which prints it and exits with status 1).
//! - Peer ids are the same base64 of `"host:port -> group"`, and a peer started without
//!   `NET_GROUP` is in group `"None"`, as in the original.

use net::PeerQuery;

/// Prints the message on the peer that runs it. Called normally it runs here; called with
/// `connected_function::on(&peer, …)` it runs on `peer`, and its output appears in that peer's
/// terminal, exactly as with app-net.
#[net::connect]
fn connected_function(message: String) {
    println!("{message}");
}

/// The original's `peer2.py`: find the other peer on this host in group "None" and run
/// `connected_function` there.
#[net::entry]
fn peer2() -> Result<(), String> {
    // app-net's `net.peers(on_host=True)` scanned this host's port range for peers of the
    // caller's group. Here the filters are spelled out; `net::peers` never returns this peer.
    let query = PeerQuery {
        on_host: true,
        groups: vec!["None".into()],
        ..Default::default()
    };
    let peers = net::peers(query).map_err(|e| e.to_string())?;
    // The original indexed `peers[0]` and failed with an IndexError when peer1 was not running.
    let target = peers
        .first()
        .ok_or("no other peer in group None on this host: start peer1 first")?;
    // `connected_function("My Message!", peer=target)` in Python. The result is `()`, as the
    // Python function returned None; an unreachable peer or a panic over there is an `Err`.
    connected_function::on(target, "My Message!".to_string()).map_err(|e| e.to_string())
}
