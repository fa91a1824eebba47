//! The peer's context: what its guest's `net` imports reach through
//! [`PeerServices`]: this peer's description, its outgoing connections, discovery and its
//! events.
//!
//! Owns turning a guest's request into a call on the wire: the target (a peer id, or any
//! member of a group), and the call's time: the request's timeout or `NET_TIMEOUT`, and never
//! more than what the guest's own call has left, so a chain A → B → C stops everywhere when
//! A's time runs out. The client, discovery and events do the work. It does not run guest
//! code.

use std::sync::Arc;
use std::time::Duration;

use netrun_abi::{CallError, CallReply, CallRequest, CallTarget, Outcome, PeerInfo, PeerQuery};

use crate::cluster::discovery::Discovery;
use crate::cluster::events::Events;
use crate::cluster::group_call::{self, Rotation};
use crate::guest::services::{PeerServices, ServiceFuture};
use crate::wire::client::{Client, Request, Target};
use crate::wire::message::{CallKind, ChainId, Encoding};

/// This peer's identity, its outgoing connections, discovery and its events.
pub struct PeerContext {
    pub me: PeerInfo,
    pub client: Arc<Client>,
    pub discovery: Arc<Discovery>,
    /// Default limit on an outgoing call, connection and reply included.
    pub call_timeout: Duration,
    pub events: Arc<Events>,
    /// Where the guest's next group call starts among the members.
    pub rotation: Rotation,
}

impl PeerContext {
    /// Runs a call the guest asked for, as part of `chain`, the chain of the call the guest is
    /// running, within `limit`, what that call has left.
    async fn call_from_guest(
        &self,
        request: CallRequest,
        chain: Option<ChainId>,
        limit: Option<Duration>,
    ) -> CallReply {
        let asked = request
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(self.call_timeout);
        let timeout = limit.map_or(asked, |limit| asked.min(limit));
        let CallRequest {
            target,
            function,
            args,
            contract,
            json,
            ..
        } = request;
        let request = |args: Vec<u8>| Request {
            kind: CallKind::Function,
            chain,
            function: &function,
            encoding: if json {
                Encoding::Json
            } else {
                Encoding::Bincode
            },
            args,
            contract: contract.clone(),
        };
        match target {
            CallTarget::Peer(id) => {
                let outcome = match Target::from_peer_id(&id) {
                    Ok(target) => self.client.call(&target, request(args), timeout).await,
                    Err(e) => Outcome::Error(e),
                };
                CallReply {
                    outcome,
                    served_by: None,
                }
            }
            CallTarget::AnyOf(group) => {
                // Each member tried gets its own copy: a call that was never sent may go on.
                let make = || request(args.clone());
                let (outcome, served_by) = group_call::call_any(
                    &self.client,
                    &self.discovery,
                    &self.rotation,
                    &group,
                    make,
                    timeout,
                )
                .await;
                CallReply { outcome, served_by }
            }
        }
    }
}

impl PeerServices for PeerContext {
    fn call(
        &self,
        request: CallRequest,
        chain: Option<ChainId>,
        limit: Option<Duration>,
    ) -> ServiceFuture<'_, CallReply> {
        Box::pin(self.call_from_guest(request, chain, limit))
    }

    fn peers(&self, query: PeerQuery) -> ServiceFuture<'_, Result<Vec<PeerInfo>, CallError>> {
        Box::pin(async move { Ok(self.discovery.peers(&query).await) })
    }

    fn this_peer(&self) -> &PeerInfo {
        &self.me
    }

    fn trigger(&self, event: &str, value: Vec<u8>, json: Option<Vec<u8>>, chain: Option<ChainId>) {
        self.events.trigger(event, value, json, chain);
    }

    fn event_wants_json(&self, event: &str) -> bool {
        self.events.wants_json(event)
    }
}
