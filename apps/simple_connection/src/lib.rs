//! The original app-net example `simple_connection`, ported to netrun.
//!
//! In Python, `app.py` decorated `connected_function` with `@net.connect()`; `peer1.py` imported
//! the app and looped forever; `peer2.py` took the first peer of its group on this host and called
//! `connected_function("My Message!", peer=...)`, which printed the message on peer1.
//!
//! Here the app is this crate, compiled to `target/apps/simple_connection.wasm`:
//!
//! ```text
//! netrun target/apps/simple_connection.wasm                      # peer1: serves
//! netrun run target/apps/simple_connection.wasm --entry peer2    # peer2: calls peer1
//! ```

use net::PeerQuery;

/// Prints the message on the peer that runs it. Called normally it runs here; called with
/// `connected_function::on(&peer, …)` it runs on `peer`.
#[net::connect]
fn connected_function(message: String) {
    println!("{message}");
}

/// The original's `peer2.py`: find the other peer on this host in group "None" and run
/// `connected_function` there.
#[net::entry]
fn peer2() -> Result<(), String> {
    // A peer started without NET_GROUP is in group "None", as in the original.
    let query = PeerQuery {
        on_host: true,
        groups: vec!["None".into()],
        ..Default::default()
    };
    let peers = net::peers(query).map_err(|e| e.to_string())?;
    let target = peers
        .first()
        .ok_or("no other peer in group None on this host: start peer1 first")?;
    connected_function::on(target, "My Message!".to_string()).map_err(|e| e.to_string())
}
