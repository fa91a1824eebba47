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
//! - [`guest::host_api`]: the `net` imports the guest calls; reads and writes guest buffers.
//! - [`cluster::context`]: the peer's services to its guest ([`cluster::context::PeerContext`]).
//! - [`wire::client`]: persistent, multiplexed outgoing connections; the table of pending calls.
//! - [`wire::connection`]: handshake, buffered reads, the batching writer task of one connection.
//! - [`wire::message`] and [`wire::frame`]: the wire messages and their length-prefixed frames.
//! - [`wire::server`]: accepts connections and reads calls on the other peer.
//! - [`cluster::router`]: picks a built-in or a module function; checks the contract.
//! - [`guest::workers`]: the peer's instances and the queue of calls into them; chains of calls.
//! - [`guest::instance`]: one instance: running a call under its limits; naming traps.
//! - [`guest::reentry`]: running a chain's calls in the instance that waits on that chain.
//! - [`guest::output`]: the guest's stdout and stderr, written to the peer's a line at a time.
//! - [`guest::sandbox`]: engine, linker and WASI sandbox; compiling and checking export types.
//! - [`guest::module`]: reading a module from disk and checking its manifest and exports.
//! - [`guest::module_cache`]: compiled modules kept on disk, so a restart does not compile again.
//! - [`cluster::discovery`]: scanning the port range for peers.
//! - [`cluster::events`]: this peer's events: their subscribers, and delivering triggered values.
//! - [`cluster::subscriber`]: registering this module's subscription handlers on matching peers.
//! - [`cli`] and [`commands`]: the command line.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod guest;
pub mod peer;
pub mod wire;

pub use wire::message::RUNTIME_VERSION;
