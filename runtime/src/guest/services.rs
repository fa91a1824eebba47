//! What the guest layer needs from the peer it runs in, as a trait the cluster layer
//! implements: calling a peer, listing peers, this peer's description, triggering an event.
//!
//! This is the only way guest code reaches the network. The store data of every instance holds
//! an `Arc<dyn PeerServices>`, so the guest layer never names the peer's own types.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use netrun_abi::{CallError, CallReply, CallRequest, PeerInfo, PeerQuery};

use crate::wire::message::ChainId;

/// A future the services return; boxed, so that the trait can be a trait object.
pub type ServiceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The services of the peer an instance runs in (the `net` imports' side of the peer).
pub trait PeerServices: Send + Sync {
    /// Runs `request` (whose arguments are a payload with blobs when `with_blobs`: see
    /// `netrun_abi::blob`) on the peer it names (or one member of the group it names), as part of
    /// `chain` (the chain of the call the guest is running, if any), within `limit` (what is
    /// left of that call's time, if it has a deadline) and answers its outcome (imports
    /// `net.call`, `net.call_start`). Failures are outcomes: they go back to the guest as
    /// values.
    fn call(
        &self,
        request: CallRequest,
        with_blobs: bool,
        chain: Option<ChainId>,
        limit: Option<Duration>,
    ) -> ServiceFuture<'_, CallReply>;

    /// The peers `query` asks for (import `net.peers`).
    fn peers(&self, query: PeerQuery) -> ServiceFuture<'_, Result<Vec<PeerInfo>, CallError>>;

    /// This peer (import `net.this_peer`).
    fn this_peer(&self) -> &PeerInfo;

    /// Hands `value`, triggered by a call of `chain`, to the subscribers of `event`; returns at
    /// once and never fails (import `net.trigger`).
    fn trigger(&self, event: &str, value: Vec<u8>, json: Option<Vec<u8>>, chain: Option<ChainId>);

    /// Whether `event` has subscribers that take its value as JSON (app-net peers), so the
    /// guest should add it (import `net.event_json`).
    fn event_wants_json(&self, event: &str) -> bool;
}
