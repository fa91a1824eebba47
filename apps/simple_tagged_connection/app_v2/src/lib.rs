//! Version 2 of the original app-net example `simple_tagged_connection` (`app_v2.py`), built as
//! `target/apps/app_v2.wasm`, with the original's `peer3.py` as the entry `peer3`:
//!
//! ```text
//! NET_GROUP=app_v1 netrun target/apps/app_v1.wasm                   # peer1
//! NET_GROUP=app_v2 netrun target/apps/app_v2.wasm                   # peer2
//! NET_GROUP=app_v2 netrun run target/apps/app_v2.wasm --entry peer3
//! ```
//!
//! `peer3` prints `My Message! Version 1` (v2 calling the tagged function on a v1 peer) then
//! `My Message! Version 2`.

/// Returns the message with " Version 2" appended; same tag and types as version 1.
#[net::connect("myTaggedFunction")]
fn connected_function(message: String) -> String {
    message + " Version 2"
}

/// The original's `peer3.py`: call `myTaggedFunction` on the first `app_v1` peer of this host,
/// then on the first `app_v2` peer, and print both answers.
#[net::entry]
fn peer3() -> Result<(), String> {
    for group in ["app_v1", "app_v2"] {
        let peers = net::peer_group(group).map_err(|e| e.to_string())?;
        let peer = peers
            .first()
            .ok_or_else(|| format!("no peer in group {group} on this host: start it first"))?;
        let response =
            connected_function::on(peer, "My Message!".to_string()).map_err(|e| e.to_string())?;
        println!("{response}");
    }
    Ok(())
}
