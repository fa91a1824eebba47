//! The netrun guest SDK: write an app as plain Rust functions, compile it to `wasm32-wasip1`,
//! run it on every peer with `netrun app.wasm`.
//!
//! ```no_run
//! #[net::connect]
//! fn greet(name: String) -> String {
//!     format!("hello, {name}")
//! }
//!
//! #[net::entry]
//! fn start() -> Result<(), net::Error> {
//!     let local = greet("me".into()); // a plain Rust call
//!     for peer in net::peer_group("None")? {
//!         let remote = greet::on(&peer, "you".into())?; // runs on `peer`
//!         println!("{local} / {remote}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - [`connect`] and [`entry`]: the attribute macros (crate `net-macros`).
//! - [`Peer`], [`peers`], [`peer_group`], [`this_peer`]: finding and calling peers.
//! - [`Error`]: every way a call can fail, to match on.
//! - [`log`]: messages in the peer's log.
//! - `host` and `memory` (private): the host imports and the buffers that cross the boundary.
//! - `__private` (hidden): what generated code calls; not a stable API.
//!
//! # State and calls
//!
//! A peer runs one instance of the app, and calls into it run one at a time, so statics and
//! `thread_local!` state persist across calls. Do not hold a `RefCell` borrow of such state
//! across an outgoing call (`f::on`, `Peer::call`): a later runtime may serve calls that arrive
//! while this one waits. A panic replaces the instance: its state starts afresh.

mod host;
mod memory;
mod peer;

#[doc(hidden)]
pub mod __private;

pub use net_macros::{connect, entry};
pub use netrun_abi::{PeerDetails, PeerQuery};
pub use peer::{Peer, peer_group, peers, this_peer};

/// Why a call failed: unreachable peer, timeout, no such function on the peer (with what it
/// offers), contract mismatch, a remote panic or trap (with its message), bad arguments, frame
/// too large, bad peer id, unknown flag.
///
/// ```
/// fn describe(e: &net::Error) -> &'static str {
///     match e {
///         net::Error::PeerUnreachable { .. } | net::Error::Timeout { .. } => "try another peer",
///         net::Error::Remote { .. } => "the function failed over there",
///         _ => "a bug on one side",
///     }
/// }
/// # assert_eq!(describe(&net::Error::Codec { message: String::new() }), "a bug on one side");
/// ```
pub type Error = netrun_abi::CallError;

/// A byte payload that crosses the wire as one slice (a `Vec<u8>` works too, more slowly).
///
/// ```
/// let data = net::Bytes::from(vec![1u8, 2, 3]);
/// assert_eq!(data.len(), 3);
/// ```
pub type Bytes = serde_bytes::ByteBuf;

/// Messages in the peer's log (stderr of `netrun`), at a level.
///
/// ```
/// net::log::info("cache warmed");
/// ```
pub mod log {
    use netrun_abi::names::log_level;

    /// Logs `message` as an error.
    pub fn error(message: &str) {
        crate::host::log(log_level::ERROR, message);
    }
    /// Logs `message` as a warning.
    pub fn warn(message: &str) {
        crate::host::log(log_level::WARN, message);
    }
    /// Logs `message` as information.
    pub fn info(message: &str) {
        crate::host::log(log_level::INFO, message);
    }
    /// Logs `message` for debugging (shown with `NET_DEV` set).
    pub fn debug(message: &str) {
        crate::host::log(log_level::DEBUG, message);
    }
}
