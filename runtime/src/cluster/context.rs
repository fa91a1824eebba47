//! The peer's context: what its guest's `net` imports reach through
//! [`PeerServices`]: this peer's description, its outgoing connections, discovery and its
//! events.
//!
//! Owns turning a guest's request into a call on the wire: the target (a peer id, or any
//! member of a group), and the call's time: the request's timeout or `NET_TIMEOUT`, and never
//! more than what the guest's own call has left, so a chain A → B → C stops everywhere when
//! A's time runs out. The client, discovery and events do the work. It does not run guest
//! code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netrun_abi::{
    CallError, CallReply, CallRequest, CallTarget, Contract, Outcome, PeerInfo, PeerQuery,
};

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
    /// The peer ids the guest has called, decoded.
    pub targets: KnownTargets,
}

/// Peer ids the guest keeps at once before [`KnownTargets`] starts over.
const KNOWN_TARGETS: usize = 1024;

/// The targets of the peer ids the guest has called, each decoded once: a guest calls the
/// same few peers again and again. Past [`KNOWN_TARGETS`] ids the list starts over, so ids
/// made up by the guest cannot grow it.
#[derive(Default)]
pub struct KnownTargets(Mutex<HashMap<String, Arc<Target>>>);

impl KnownTargets {
    /// The target `id` names.
    fn of(&self, id: &str) -> Result<Arc<Target>, CallError> {
        if let Some(target) = self.0.lock().expect("targets lock").get(id) {
            return Ok(target.clone());
        }
        let target = Arc::new(Target::from_peer_id(id)?);
        let mut known = self.0.lock().expect("targets lock");
        if known.len() >= KNOWN_TARGETS {
            known.clear();
        }
        known.insert(id.to_string(), target.clone());
        Ok(target)
    }
}

impl PeerContext {
    /// Runs a call the guest asked for, as part of `chain`, the chain of the call the guest is
    /// running, within `limit`, what that call has left.
    async fn call_from_guest(
        &self,
        request: CallRequest,
        with_blobs: bool,
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
        let request = |args: Vec<u8>, contract: Option<Contract>| Request {
            kind: CallKind::Function,
            chain,
            function: &function,
            encoding: match (json, with_blobs) {
                (true, _) => Encoding::Json,
                (false, true) => Encoding::BincodeWithBlobs,
                (false, false) => Encoding::Bincode,
            },
            args,
            contract,
        };
        match target {
            CallTarget::Peer(id) => {
                let outcome = match self.targets.of(&id) {
                    Ok(target) => {
                        let request = request(args, contract);
                        self.client.call(&target, request, timeout).await
                    }
                    Err(e) => Outcome::Error(e),
                };
                CallReply {
                    outcome,
                    served_by: None,
                }
            }
            CallTarget::AnyOf(group) => {
                // Each member tried gets its own copy: a call that was never sent may go on.
                let make = || request(args.clone(), contract.clone());
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
        with_blobs: bool,
        chain: Option<ChainId>,
        limit: Option<Duration>,
    ) -> ServiceFuture<'_, CallReply> {
        Box::pin(self.call_from_guest(request, with_blobs, chain, limit))
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

#[cfg(test)]
mod tests {
    use netrun_abi::peer_id;

    use super::*;

    #[test]
    fn a_peer_id_is_decoded_once_and_made_up_ids_do_not_pile_up() {
        let targets = KnownTargets::default();
        let id = peer_id::encode("127.0.0.1", 3010, "None");
        let first = targets.of(&id).unwrap();
        assert_eq!(first.address, "127.0.0.1:3010");
        assert!(Arc::ptr_eq(&first, &targets.of(&id).unwrap()));
        let Err(CallError::InvalidPeerId { reason, .. }) = targets.of("garbage!") else {
            panic!("garbage decoded");
        };
        assert!(reason.contains("base64"), "{reason}");
        for port in 0..=KNOWN_TARGETS as u16 {
            targets
                .of(&peer_id::encode("127.0.0.1", port, "g"))
                .unwrap();
        }
        assert!(targets.0.lock().unwrap().len() <= KNOWN_TARGETS);
    }
}
