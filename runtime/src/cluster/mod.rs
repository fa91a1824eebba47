//! The cluster: this peer among the others.
//!
//! Owns routing arriving calls, discovery, events and their subscribers, and registering this
//! module's subscriptions on other peers.
//!
//! Must not import the root (the assembly of a peer and the CLI).

pub mod discovery;
pub mod events;
pub mod router;
pub mod subscriber;
