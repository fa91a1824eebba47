//! The original app-net example `simple_subscription`, ported to netrun.
//!
//! In Python, `app.py` declared the event `myEvent` (`something_happened`) and a subscriber to it
//! on hubs of this host (`handle_something_happened`, which printed each message); `peer1.py`
//! and `peer2.py` imported the app and looped; `hub.py` set `NET_IS_HUB`, read lines from stdin
//! and triggered the event with each one. Every peer set `NET_GROUP=myApp`.
//!
//! Here every peer runs this module, compiled to `target/apps/simple_subscription.wasm`:
//!
//! ```text
//! NET_GROUP=myApp netrun target/apps/simple_subscription.wasm                      # peer1
//! NET_GROUP=myApp netrun target/apps/simple_subscription.wasm                      # peer2
//! NET_GROUP=myApp netrun run target/apps/simple_subscription.wasm --entry hub --hub
//! ```
//!
//! Each line typed into the hub is printed by peer1 and peer2. Unlike the original, the order in
//! which the peers start does not matter: a hub started after its subscribers gets their
//! subscriptions within a few seconds.

use std::io::{BufRead, Write};

/// Triggering the event runs this here and delivers the message to every subscriber of
/// `myEvent` on this peer. The original returned `args, kwargs`; the return value is what the
/// subscribers' handlers take.
#[net::event("myEvent")]
fn something_happened(message: String) -> String {
    message
}

/// Registered on every hub of this host; prints what the hub sends.
#[net::subscribe("myEvent", hubs_only = true, on_host = true)]
fn handle_something_happened(message: String) {
    println!("{message}");
}

/// The original's `hub.py`: each line read from stdin triggers `myEvent`. Ends at end of input.
#[net::entry]
fn hub() -> Result<(), String> {
    println!("Enter the message to send to the peers subscribed to you.");
    let mut lines = std::io::stdin().lock();
    loop {
        print!("Message: ");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let mut line = String::new();
        if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            println!();
            return Ok(());
        }
        something_happened(line.trim_end_matches(['\n', '\r']).to_string());
    }
}
