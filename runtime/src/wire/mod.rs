//! The wire: how peers talk over TCP.
//!
//! Owns frames, messages, one connection (the byte streams it runs over in `stream`, the
//! handshake and buffered reads in `connection`, the batching writer in `writer`), waiting
//! awake for a moment before sleeping (`spin`), the client pool of outgoing connections with
//! its table of pending calls, and the server loop, which hands each arriving call to a
//! dispatcher it is given.
//!
//! Must not import the guest or cluster layers: it moves bytes and matches replies to calls,
//! and never decides what a call runs.

pub mod appnet;
pub mod client;
pub mod connection;
pub mod frame;
pub mod message;
pub mod secure;
pub mod server;
pub mod spin;
pub mod stream;
pub mod writer;
