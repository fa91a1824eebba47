//! Deciding what an arriving call runs: a built-in connection or one of the module's functions.
//!
//! Owns name lookup (connected functions by registered name, event deliveries to subscription
//! handlers by handler name: one lookup a call), the contract check (a caller whose type
//! fingerprint differs is refused with both signatures, never fed to the guest), the built-ins
//! (`info`, `connections`, `pass_through`, `null` in both encodings; `subscribe` and
//! `unsubscribe` for peers), and turning a guest trap into a remote error. It does not own
//! sockets (see [`crate::wire::server`]), the instances (see [`crate::guest::scheduler`]) or
//! delivery (see [`crate::cluster::events`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netrun_abi::manifest::Record;
use netrun_abi::names::{self, ExportKind, builtin, flag};
use netrun_abi::{
    CallError, Outcome, PeerDetails, PeerInfo, PeerQuery, SubscribeRequest, TimeoutStage, codec,
};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::cluster::appnet::{self, Asked};
use crate::cluster::discovery::Discovery;
use crate::cluster::events::Events;
use crate::cluster::identity::Identity;
use crate::cluster::registrations::Registrations;
use crate::guest::module::Manifest;
use crate::guest::scheduler::{Due, GuestFailure, Job, Scheduler};
use crate::wire::appnet::{Reply, Request};
use crate::wire::message::{Call, CallKind, Encoding};
use crate::wire::server::Dispatch;

/// Routes calls on one peer.
pub struct Router {
    /// What `info` answers, but for the subscription lists, which change.
    details: PeerDetails,
    /// This peer as listings show it, first in what `members` answers.
    me: PeerInfo,
    /// What `members` lists after it.
    discovery: Arc<Discovery>,
    /// `host:port -> group`, for error messages.
    display: String,
    manifest: Manifest,
    /// The manifest's functions and handlers, as calls find them.
    callables: Callables,
    scheduler: Arc<Scheduler>,
    events: Arc<Events>,
    registrations: Arc<Registrations>,
}

impl Router {
    /// The router of the peer `identity` serving `manifest`.
    pub fn new(
        identity: &Identity,
        discovery: Arc<Discovery>,
        manifest: Manifest,
        scheduler: Arc<Scheduler>,
        events: Arc<Events>,
        registrations: Arc<Registrations>,
    ) -> Router {
        let details = identity.details(&manifest);
        if details.appnet {
            appnet::check_info_size(&details);
        }
        Router {
            details,
            me: identity.info(),
            discovery,
            display: identity.address.to_string(),
            callables: Callables::of(&manifest),
            manifest,
            scheduler,
            events,
            registrations,
        }
    }

    /// Runs `call`, sent by the peer `caller` (`None` for a client that is not a peer), and
    /// says what it produced.
    pub async fn route(&self, call: Call, caller: Option<&str>) -> Outcome {
        let callables = match call.kind {
            CallKind::Function => {
                if call.function == builtin::MEMBERS {
                    return self.members(call.encoding).await;
                }
                if let Some(outcome) = self.builtin(&call, caller) {
                    return outcome;
                }
                &self.callables.functions
            }
            CallKind::Event => &self.callables.handlers,
        };
        let Some(callable) = callables.get(&call.function) else {
            let available = match call.kind {
                CallKind::Function => self.details.connections.clone(),
                CallKind::Event => self.manifest.subscriptions.keys().cloned().collect(),
            };
            return Outcome::Error(CallError::InvalidConnection {
                peer: self.display.clone(),
                function: call.function,
                available,
            });
        };
        let export = match call.encoding {
            Encoding::Json => callable.json.clone(),
            Encoding::Bincode | Encoding::BincodeWithBlobs => callable.bincode.clone(),
        };
        self.call_module(call, &callable.record, export).await
    }

    /// Runs the request of an app-net peer (or client) at `from`: a built-in under app-net's
    /// name, or a function through the JSON bridge (see [`appnet`]).
    pub async fn route_appnet(&self, request: Request, from: SocketAddr) -> Reply {
        let details = self.details();
        let (functions, handlers) = (&self.manifest.functions, &self.manifest.subscriptions);
        match appnet::understand(&request, &details, functions, handlers) {
            Asked::Answer(reply) => reply,
            Asked::Run(call) => {
                tracing::debug!("app-net call of {} from {from}", call.function);
                appnet::reply(self.route(call, None).await)
            }
            Asked::Subscribe {
                event,
                host,
                port,
                connection,
            } => match self
                .events
                .subscribe_appnet(&event, &host, port, &connection)
            {
                // app-net's subscription_handler answers None.
                Ok(_) => Reply::Value(serde_json::Value::Null),
                Err(e) => Reply::Error(e.to_string()),
            },
        }
    }

    /// Runs a call of one of the module's functions (or handlers), `record` in the manifest, in
    /// an instance: its `export`.
    async fn call_module(&self, call: Call, record: &Record, export: Arc<str>) -> Outcome {
        if let Some(contract) = &call.contract
            && contract.fingerprint != record.fingerprint
        {
            return Outcome::Error(CallError::ContractMismatch {
                peer: self.display.clone(),
                function: call.function,
                caller: contract.signature.clone(),
                callee: record.type_signature(),
            });
        }
        // The time the caller gave the call: none left means it is refused unrun.
        let due = match call.time_left_ms {
            Some(0) => {
                return Outcome::Error(CallError::Timeout {
                    peer: self.display.clone(),
                    function: call.function,
                    after_ms: 0,
                    stage: TimeoutStage::Queued,
                });
            }
            Some(ms) => Some(Due::within(Duration::from_millis(ms), Instant::now())),
            None => None,
        };
        let job = Job::Export {
            export,
            args: call.args,
            with_blobs: call.encoding == Encoding::BincodeWithBlobs,
        };
        match self.scheduler.run(job, call.chain, due).await {
            Ok(outcome) => outcome,
            Err(GuestFailure::Trap { kind, message }) => Outcome::Error(CallError::Remote {
                peer: self.display.clone(),
                function: call.function,
                kind,
                message,
            }),
            Err(GuestFailure::TimedOut { stage, after }) => Outcome::Error(CallError::Timeout {
                peer: self.display.clone(),
                function: call.function,
                after_ms: after.as_millis() as u64,
                stage,
            }),
        }
    }

    fn builtin(&self, call: &Call, caller: Option<&str>) -> Option<Outcome> {
        let outcome = match call.function.as_str() {
            builtin::INFO => encode(call.encoding, &self.details()),
            builtin::CONNECTIONS => encode(call.encoding, &self.details.connections),
            builtin::NULL => Outcome::Flag(flag::NULL.to_string()),
            builtin::PASS_THROUGH => self.pass_through(call),
            builtin::SUBSCRIBE | builtin::UNSUBSCRIBE => self.subscription(call, caller),
            _ => return None,
        };
        Some(outcome)
    }

    /// `members`: this peer, then every peer it lists (its host rescanned).
    async fn members(&self, encoding: Encoding) -> Outcome {
        let mut members = vec![self.me.clone()];
        let fresh = PeerQuery {
            refresh: true,
            ..Default::default()
        };
        members.extend(self.discovery.peers(&fresh).await);
        encode(encoding, &members)
    }

    /// `info`: the fixed details and the current subscription lists.
    fn details(&self) -> PeerDetails {
        PeerDetails {
            subscribers: self.events.subscribers(),
            subscriptions: self.registrations.subscriptions(),
            ..self.details.clone()
        }
    }

    /// `subscribe` / `unsubscribe`: only a peer can subscribe (its handshake names it, and
    /// events are delivered to that id), with a bincode [`SubscribeRequest`].
    fn subscription(&self, call: &Call, caller: Option<&str>) -> Outcome {
        let refuse = |message: String| {
            Outcome::Error(CallError::BadArguments {
                function: call.function.clone(),
                message,
            })
        };
        let Some(subscriber) = caller else {
            return refuse(
                "only a peer can subscribe: this connection did not say which peer it is".into(),
            );
        };
        if call.encoding != Encoding::Bincode {
            return refuse("takes a bincode SubscribeRequest, not JSON".into());
        }
        let request: SubscribeRequest = match codec::decode_untrusted(&call.args) {
            Ok(request) => request,
            Err(e) => return refuse(format!("expected a SubscribeRequest: {e}")),
        };
        let answer = if call.function == builtin::SUBSCRIBE {
            self.events.subscribe(subscriber, request)
        } else {
            Ok(self.events.unsubscribe(subscriber, &request))
        };
        match answer {
            Ok(new) => encode(Encoding::Bincode, &new),
            Err(e) => Outcome::Error(e),
        }
    }

    /// Returns the single argument unchanged (several arguments come back as their array, as
    /// in the original). In bincode a one-element tuple encodes exactly as its element, so the
    /// bytes go back as they came.
    fn pass_through(&self, call: &Call) -> Outcome {
        match call.encoding {
            Encoding::Bincode => Outcome::Value(call.args.clone()),
            Encoding::BincodeWithBlobs => Outcome::ValueWithBlobs(call.args.clone()),
            Encoding::Json => match serde_json::from_slice::<Vec<serde_json::Value>>(&call.args) {
                Ok(mut args) if args.len() == 1 => encode(Encoding::Json, &args.remove(0)),
                Ok(args) => encode(Encoding::Json, &args),
                Err(e) => Outcome::Error(CallError::BadArguments {
                    function: builtin::PASS_THROUGH.to_string(),
                    message: format!("expected a JSON array of arguments: {e}"),
                }),
            },
        }
    }
}

/// The module's functions and handlers, each found by its name once per call: its record (for
/// the contract check) and its exports in each encoding, named once, so that a call formats
/// no name and looks up no other.
///
/// Keyed by FxHash: the keys are the manifest's, fixed before any call, so a caller choosing
/// the names it asks for can make no key collide with another (what SipHash guards against),
/// and a lookup costs a few nanoseconds rather than SipHash's twenty.
struct Callables {
    functions: FxHashMap<String, Callable>,
    handlers: FxHashMap<String, Callable>,
}

/// A function or handler of the module.
struct Callable {
    record: Record,
    /// Its export taking bincode arguments.
    bincode: Arc<str>,
    /// Its export taking JSON arguments.
    json: Arc<str>,
}

impl Callables {
    fn of(manifest: &Manifest) -> Callables {
        let table = |records: &BTreeMap<String, Record>, bincode, json| {
            records
                .iter()
                .map(|(name, record)| {
                    let callable = Callable {
                        record: record.clone(),
                        bincode: names::export(bincode, name).into(),
                        json: names::export(json, name).into(),
                    };
                    (name.clone(), callable)
                })
                .collect()
        };
        Callables {
            functions: table(&manifest.functions, ExportKind::Function, ExportKind::Json),
            handlers: table(
                &manifest.subscriptions,
                ExportKind::Subscriber,
                ExportKind::SubscriberJson,
            ),
        }
    }
}

impl Dispatch for Router {
    fn dispatch(&self, call: Call, caller: Option<&str>) -> impl Future<Output = Outcome> + Send {
        self.route(call, caller)
    }

    fn appnet(&self, request: Request, from: SocketAddr) -> impl Future<Output = Reply> + Send {
        self.route_appnet(request, from)
    }
}

/// A built-in's answer in the call's encoding.
fn encode<T: Serialize>(encoding: Encoding, value: &T) -> Outcome {
    let bytes = match encoding {
        Encoding::Bincode | Encoding::BincodeWithBlobs => {
            codec::encode(value).map_err(|e| e.to_string())
        }
        Encoding::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
    };
    match bytes {
        Ok(bytes) => Outcome::Value(bytes),
        Err(message) => Outcome::Error(CallError::Codec { message }),
    }
}
