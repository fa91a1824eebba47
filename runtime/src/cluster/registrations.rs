//! The subscribing side of events: registering this module's subscription handlers on the
//! peers that match their filters, now and later.
//!
//! Owns the registration loop and what it registered (for `info`). Every
//! [`RESUBSCRIBE_EVERY`] it rescans and sends the built-in `subscribe` to every matching peer.
//! Registrations are idempotent on the publisher, so sending again costs one small call and
//! fixes two things the original could not: a hub started after its subscribers gets them, and
//! a hub that restarted (and forgot them) gets them back. A peer that refuses (it has no such
//! event, or the event's type differs from the handler's) is logged once, when that changes.
//! It does not deliver events: that is [`crate::cluster::events`].
//!
//! On an app-net (Python) publisher a handler registers with app-net's `subscription_handler`,
//! once while the publisher stays listed: app-net keeps every registration it is sent, so a
//! second would deliver everything twice. app-net has no unsubscribe: it prunes a subscriber
//! it cannot reach.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netrun_abi::manifest::Record;
use netrun_abi::names::builtin;
use netrun_abi::{
    CallError, Contract, Outcome, PeerInfo, PeerQuery, SubscribeRequest, SubscriptionInfo, codec,
};

use crate::cluster::context::PeerContext;
use crate::cluster::discovery::Discovery;
use crate::wire::appnet;
use crate::wire::client::{Request, Target};
use crate::wire::message::{CallKind, Encoding};

/// How often the registration loop looks for matching peers.
pub const RESUBSCRIBE_EVERY: Duration = Duration::from_secs(2);
/// Longest wait for one `subscribe` call.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One handler on one publisher: `(handler, publisher peer id)`.
type Key = (String, String);

/// What the last `subscribe` to a publisher said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Registered,
    Refused(String),
}

/// One subscription handler and where it subscribes.
struct Handler {
    record: Record,
    /// With explicit `peers`: their addresses (`host:port`); otherwise discovery decides.
    addresses: Option<Vec<String>>,
}

/// This module's subscription handlers and where they are registered.
pub struct Registrations {
    handlers: Vec<Handler>,
    states: Mutex<BTreeMap<Key, State>>,
}

impl Registrations {
    /// The subscription handlers among `records`. An explicit peer that is neither a peer id
    /// nor `host:port` is logged here, once, and left out.
    pub fn new<'a>(records: impl IntoIterator<Item = &'a Record>) -> Arc<Registrations> {
        let handlers = records
            .into_iter()
            .filter_map(|record| {
                let subscription = record.subscription.as_ref()?;
                let addresses = (!subscription.peers.is_empty()).then(|| {
                    let address = |peer: &String| {
                        let address = explicit_address(peer);
                        if address.is_none() {
                            tracing::warn!(
                                "subscription {}: {peer:?} is neither a peer id nor host:port; ignored",
                                record.name
                            );
                        }
                        address
                    };
                    subscription.peers.iter().filter_map(address).collect()
                });
                Some(Handler {
                    record: record.clone(),
                    addresses,
                })
            })
            .collect();
        Arc::new(Registrations {
            handlers,
            states: Mutex::new(BTreeMap::new()),
        })
    }

    /// Registers every handler on its peers every [`RESUBSCRIBE_EVERY`], until dropped.
    pub async fn run(self: Arc<Self>, peer: Arc<PeerContext>) {
        if self.handlers.is_empty() {
            return;
        }
        loop {
            self.register_once(&peer).await;
            tokio::time::sleep(RESUBSCRIBE_EVERY).await;
        }
    }

    /// One pass: find the matching peers and subscribe on each, concurrently.
    pub async fn register_once(&self, peer: &Arc<PeerContext>) {
        let found = peer
            .discovery
            .peers(&PeerQuery {
                refresh: true,
                ..Default::default()
            })
            .await;
        let mut calls = tokio::task::JoinSet::new();
        let mut seen = Vec::new();
        for handler in &self.handlers {
            let publishers = publishers(handler, &peer.discovery, &found).await;
            if publishers.is_empty() {
                let name = &handler.record.name;
                tracing::debug!("subscription {name}: no matching peer yet; looking again");
            }
            for publisher in publishers {
                let key = (handler.record.name.clone(), publisher.id.clone());
                seen.push(key.clone());
                // app-net keeps every registration it is sent, twice if sent twice: one is
                // enough while the publisher stays listed.
                if publisher.appnet && self.is_registered(&key) {
                    continue;
                }
                let request = subscribe_request(&handler.record);
                let peer = peer.clone();
                calls.spawn(async move {
                    let outcome = match Target::from_peer_id(&publisher.id) {
                        Ok(target) if publisher.appnet => {
                            subscribe_appnet(&peer, &target, &request).await
                        }
                        Ok(target) => call(&peer, &target, builtin::SUBSCRIBE, &request).await,
                        Err(e) => Outcome::Error(e),
                    };
                    (key, request.event, publisher, outcome)
                });
            }
        }
        while let Some(Ok((key, event, publisher, outcome))) = calls.join_next().await {
            self.record(key, &event, &publisher, outcome);
        }
        // Publishers that vanished are no longer registered.
        let mut states = self.states.lock().expect("states lock");
        states.retain(|key, _| seen.contains(key));
    }

    /// Unregisters everywhere (a peer stopping cleanly), waiting at most `limit`.
    pub async fn unsubscribe_all(&self, peer: &Arc<PeerContext>, limit: Duration) {
        let registered: Vec<(String, String)> = self
            .states
            .lock()
            .expect("states lock")
            .iter()
            .filter(|(_, state)| **state == State::Registered)
            .map(|(key, _)| key.clone())
            .collect();
        let mut calls = tokio::task::JoinSet::new();
        for (handler, publisher) in registered {
            let Some(record) = self.handler_record(&handler) else {
                continue;
            };
            let Ok(target) = Target::from_peer_id(&publisher) else {
                continue;
            };
            let request = subscribe_request(record);
            let peer = peer.clone();
            calls.spawn(async move {
                let _ = call(&peer, &target, builtin::UNSUBSCRIBE, &request).await;
            });
        }
        let _ =
            tokio::time::timeout(limit, async { while calls.join_next().await.is_some() {} }).await;
    }

    /// Where this peer's handlers are registered, sorted (for `info`).
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let states = self.states.lock().expect("states lock");
        let mut out: Vec<SubscriptionInfo> = states
            .iter()
            .filter(|(_, state)| **state == State::Registered)
            .filter_map(|((handler, publisher), _)| {
                let record = self.handler_record(handler)?;
                Some(SubscriptionInfo {
                    event: record.subscription.as_ref()?.event.clone(),
                    peer: publisher.clone(),
                    handler: handler.clone(),
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Whether `key` is registered.
    fn is_registered(&self, key: &Key) -> bool {
        let states = self.states.lock().expect("states lock");
        states.get(key) == Some(&State::Registered)
    }

    /// The record of the handler named `handler`.
    fn handler_record(&self, handler: &str) -> Option<&Record> {
        self.handlers
            .iter()
            .map(|h| &h.record)
            .find(|r| r.name == handler)
    }

    /// Notes what `subscribe` answered; logs only changes.
    fn record(&self, key: Key, event: &str, publisher: &PeerInfo, outcome: Outcome) {
        let name = publisher.address();
        let no_such_event = matches!(outcome, Outcome::Error(CallError::BadArguments { .. }));
        let state = match outcome {
            Outcome::Value(bytes) => match codec::decode_untrusted::<bool>(&bytes) {
                Ok(_) => State::Registered,
                Err(e) => State::Refused(format!("unreadable answer: {e}")),
            },
            Outcome::ValueWithBlobs(_) => {
                State::Refused("unreadable answer: a value with blobs".to_string())
            }
            Outcome::Error(e) => State::Refused(e.to_string()),
            Outcome::Flag(flag) => State::Refused(format!("answered with flag {flag}")),
        };
        let mut states = self.states.lock().expect("states lock");
        let previous = states.insert(key.clone(), state.clone());
        if previous.as_ref() == Some(&state) {
            return;
        }
        match state {
            State::Registered => tracing::info!("subscribed {} to event {event} on {name}", key.0),
            // A peer without the event is most peers, for a handler without filters.
            State::Refused(reason) if no_such_event => tracing::debug!(
                "not subscribing {} to event {event} on {name}: {reason}",
                key.0
            ),
            State::Refused(reason) => tracing::warn!(
                "cannot subscribe {} to event {event} on {name}: {reason}",
                key.0
            ),
        }
    }
}

/// The peers `handler` subscribes on: its explicit peers (probed, so that a `host:port` gets
/// its id, and only live peers count), or the discovered ones its filters keep.
async fn publishers(handler: &Handler, discovery: &Discovery, found: &[PeerInfo]) -> Vec<PeerInfo> {
    if let Some(addresses) = &handler.addresses {
        let mut out = Vec::new();
        for address in addresses {
            out.extend(discovery.probe(address).await);
        }
        return out;
    }
    let Some(subscription) = &handler.record.subscription else {
        return Vec::new();
    };
    let query = PeerQuery {
        on_host: subscription.on_host,
        groups: subscription.groups.clone(),
        hubs_only: subscription.hubs_only,
        refresh: false,
    };
    discovery.filter(found.to_vec(), &query)
}

/// The address of an explicit peer: a peer id, or `host:port` (`[v6]:port`).
fn explicit_address(peer: &str) -> Option<String> {
    Target::parse(peer).ok().map(|target| target.address)
}

/// What a handler sends to `subscribe`.
fn subscribe_request(handler: &Record) -> SubscribeRequest {
    SubscribeRequest {
        event: handler
            .subscription
            .as_ref()
            .map(|s| s.event.clone())
            .unwrap_or_default(),
        handler: handler.name.clone(),
        contract: Contract {
            fingerprint: handler.fingerprint,
            signature: handler.type_signature(),
        },
        accepts: handler.accepts(),
    }
}

/// Subscribes with app-net's `subscription_handler(event, host, port, connection)` on the
/// app-net peer `target`: it will call the handler by name, as a connection of this peer's.
/// Answers `true` as `subscribe` does (app-net answers `None`, and refuses nothing).
async fn subscribe_appnet(
    peer: &PeerContext,
    target: &Target,
    request: &SubscribeRequest,
) -> Outcome {
    let args = serde_json::json!([request.event, peer.me.host, peer.me.port, request.handler]);
    let function = appnet::builtin::SUBSCRIPTION_HANDLER;
    let json = Request::json(function, args.to_string().into_bytes());
    match peer.client.call(target, json, SUBSCRIBE_TIMEOUT).await {
        Outcome::Value(_) => match codec::encode(&true) {
            Ok(yes) => Outcome::Value(yes),
            Err(e) => Outcome::Error(CallError::from(e)),
        },
        other => other,
    }
}

/// Sends `request` to the built-in `function` (`subscribe` or `unsubscribe`) on `target`.
async fn call(
    peer: &PeerContext,
    target: &Target,
    function: &str,
    request: &SubscribeRequest,
) -> Outcome {
    let args = match codec::encode(request) {
        Ok(args) => args,
        Err(e) => return Outcome::Error(CallError::from(e)),
    };
    let request = Request {
        kind: CallKind::Function,
        chain: None,
        function,
        encoding: Encoding::Bincode,
        args,
        contract: None,
    };
    peer.client.call(target, request, SUBSCRIBE_TIMEOUT).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_peers_are_ids_or_addresses() {
        let id = netrun_abi::peer_id::encode("127.0.0.1", 3012, "hubs");
        assert_eq!(explicit_address(&id).as_deref(), Some("127.0.0.1:3012"));
        assert_eq!(
            explicit_address("127.0.0.1:3010").as_deref(),
            Some("127.0.0.1:3010")
        );
        assert_eq!(
            explicit_address("[::1]:3010").as_deref(),
            Some("[::1]:3010")
        );
        for bad in ["nonsense", "host:port", ":3010", "127.0.0.1:99999"] {
            assert_eq!(explicit_address(bad), None, "{bad}");
        }
    }
}
