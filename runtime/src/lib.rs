//! netrun: a peer-to-peer function runtime where the application is a WebAssembly module.
//!
//! Every peer runs `netrun app.wasm`; calling a connected function with a peer id runs it on
//! that peer, inside that peer's wasmtime sandbox, and brings the result (or the remote error)
//! back. See `docs/` and the README for the user's view; `shared/DESIGN.md` for the contract.
//!
//! # Layout
//!
//! A call from a guest to another peer goes, in order, through:
//!
//! - [`host_api`]: the `net` imports the guest calls; reads and writes guest buffers.
//! - [`peer`]: the peer's identity and services ([`peer::PeerContext`]); start-up and binding.
//! - [`client`]: persistent, multiplexed outgoing connections; the table of pending calls.
//! - [`connection`]: handshake, buffered reads, the batching writer task of one connection.
//! - [`message`] and [`frame`]: the wire messages and their length-prefixed frames.
//! - [`server`]: accepts connections and reads calls on the other peer.
//! - [`router`]: picks a built-in or a module function; checks the contract.
//! - [`workers`]: the peer's instances and the queue of calls into them; chains of calls.
//! - [`instance`]: one instance: running a call under its limits; naming traps.
//! - [`reentry`]: running a chain's calls in the instance that waits on that chain.
//! - [`guest_output`]: the guest's stdout and stderr, written to the peer's a line at a time.
//! - [`sandbox`]: engine, linker and WASI sandbox; compiling and checking export types.
//! - [`module`]: reading a module from disk and checking its manifest and exports.
//! - [`module_cache`]: compiled modules kept on disk, so a restart does not compile again.
//! - [`discovery`]: scanning the port range for peers.
//! - [`events`]: this peer's events: their subscribers, and delivering triggered values.
//! - [`subscriber`]: registering this module's subscription handlers on matching peers.
//! - [`cli`] and [`commands`]: the command line.

pub mod cli;
pub mod client;
pub mod commands;
pub mod connection;
pub mod discovery;
pub mod events;
pub mod frame;
pub mod guest_output;
pub mod host_api;
pub mod instance;
pub mod message;
pub mod module;
pub mod module_cache;
pub mod peer;
pub mod reentry;
pub mod router;
pub mod sandbox;
pub mod server;
pub mod subscriber;
pub mod workers;

/// Version of this runtime, sent in every handshake and shown by `info`.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
