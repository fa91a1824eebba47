//! netrun: a peer-to-peer function runtime where the application is a WebAssembly module.
//!
//! Every peer runs `netrun app.wasm`; calling a connected function with a peer id runs it on
//! that peer, inside that peer's wasmtime sandbox, and brings the result (or the remote error)
//! back. See `docs/` and the README for the user's view; `shared/DESIGN.md` for the contract.
//!
//! # Layout
//!
//! Four layers, each importing only the ones below it (`docs/architecture.md` draws them and
//! follows one call through every hop):
//!
//! - [`wire`]: frames, messages, one connection, the client pool and the server loop, which
//!   hands calls to a [`wire::server::Dispatch`]; app-net's wire format, on the same port.
//! - [`guest`]: the module, the sandbox, instances and their limits, the `net` host imports,
//!   re-entrant chains, the scheduler and the workers. It reaches the network only through
//!   [`guest::services::PeerServices`].
//! - [`cluster`]: the peer's identity and context (the `PeerServices` implementation), the
//!   router (the `Dispatch` implementation), the bridge to app-net peers, discovery, events and
//!   subscription registrations.
//! - The root: [`peer`] binds a port and assembles a peer from the parts; [`cli`] and
//!   [`commands`] are the command line; [`bench`] is the load of `netrun bench`.
//!
//! A call from a guest to another peer goes, in order, through [`guest::host_api`],
//! [`cluster::context`], [`wire::client`], [`wire::connection`] and [`wire::frame`]; on the
//! other peer through [`wire::server`], [`cluster::router`], [`guest::scheduler`],
//! [`guest::workers`] and [`guest::instance`], into the guest's export; and back the same way.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod guest;
pub mod peer;
pub mod wire;

pub use wire::message::RUNTIME_VERSION;
