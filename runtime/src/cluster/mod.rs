//! The cluster: this peer among the others.
//!
//! Owns the bridge to app-net peers, the peer's context (what its guest reaches through
//! [`PeerServices`](crate::guest::services::PeerServices)), routing arriving calls (the
//! server's [`Dispatch`](crate::wire::server::Dispatch)), discovery, events and their
//! subscribers, and registering this module's subscriptions on other peers.
//!
//! Uses the wire and guest layers; must not import the root (the assembly of a peer and the
//! CLI).

pub mod address;
pub mod appnet;
pub mod context;
pub mod discovery;
pub mod events;
pub mod group_call;
pub mod identity;
pub mod lan;
pub mod membership;
pub mod registrations;
pub mod router;
