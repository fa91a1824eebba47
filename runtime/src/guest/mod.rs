//! The guest: the app module and the sandbox it runs in.
//!
//! Owns loading, checking and caching modules, the wasmtime engine and linker (with WASI's
//! clock reads answered by [`clocks`]), instances and the limits of a call, the `net` host
//! imports, re-entrant calls of a chain, the workers and the scheduler's queue, and the
//! guest's output.
//!
//! Must not import the cluster layer or the root. It reaches the network only through
//! [`services::PeerServices`], a trait the cluster layer implements, and uses the wire's plain
//! types (a chain id) and its way of waiting awake ([`crate::wire::spin`]), but none of its
//! machinery.

pub mod blobs;
pub mod chain;
pub mod clocks;
pub mod config;
pub mod exports;
pub mod handover;
pub mod host_api;
pub mod instance;
pub mod module;
pub mod module_cache;
pub mod output;
pub mod reentry;
pub mod sandbox;
pub mod scheduler;
pub mod services;
pub mod started;
pub mod state;
pub mod workers;
