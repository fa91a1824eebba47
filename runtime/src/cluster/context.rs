//! The peer's context: what its guest's `net` imports reach through
//! [`PeerServices`]: this peer's description, its outgoing connections, discovery and its
//! events.
//!
//! Owns turning a guest's request into a call on the wire (the target from the peer id, the
//! timeout); the client, discovery and events do the work. It does not run guest code.

use std::sync::Arc;
use std::time::Duration;

use netrun_abi::{CallError, CallRequest, Outcome, PeerInfo, PeerQuery};

use crate::cluster::discovery::Discovery;
use crate::cluster::events::Events;
use crate::guest::services::{PeerServices, ServiceFuture};
use crate::wire::client::{Client, Request, Target};
use crate::wire::message::{CallKind, ChainId, Encoding};

/// This peer's identity, its outgoing connections, discovery and its events.
pub struct PeerContext {
    pub me: PeerInfo,
    pub client: Arc<Client>,
    pub discovery: Discovery,
    /// Default limit on an outgoing call, connection and reply included.
    pub call_timeout: Duration,
    pub events: Arc<Events>,
}

impl PeerContext {
    /// Runs a call the guest asked for, as part of `chain`, the chain of the call the guest is
    /// running.
    async fn call_from_guest(&self, request: CallRequest, chain: Option<ChainId>) -> Outcome {
        let target = match Target::from_peer_id(&request.peer) {
            Ok(target) => target,
            Err(e) => return Outcome::Error(e),
        };
        let timeout = request
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.call_timeout);
        let request = Request {
            kind: CallKind::Function,
            chain,
            function: &request.function,
            encoding: Encoding::Bincode,
            args: request.args,
            contract: request.contract,
        };
        self.client.call(&target, request, timeout).await
    }
}

impl PeerServices for PeerContext {
    fn call(&self, request: CallRequest, chain: Option<ChainId>) -> ServiceFuture<'_, Outcome> {
        Box::pin(self.call_from_guest(request, chain))
    }

    fn peers(&self, query: PeerQuery) -> ServiceFuture<'_, Result<Vec<PeerInfo>, CallError>> {
        Box::pin(async move { Ok(self.discovery.peers(&query).await) })
    }

    fn this_peer(&self) -> &PeerInfo {
        &self.me
    }

    fn trigger(&self, event: &str, value: Vec<u8>, chain: Option<ChainId>) {
        self.events.trigger(event, value, chain);
    }
}
