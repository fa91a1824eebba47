//! The publishing side of events: who subscribes to this peer's events, and delivering what
//! the guest triggers.
//!
//! Owns the subscriber table (filled by the built-in `subscribe`, emptied by `unsubscribe` and
//! by pruning) and delivery. Each subscriber has its own queue and task, so values reach it in
//! the order they were triggered, and a slow one delays only itself; at most
//! `NET_THREAD_LIMIT` deliveries are in flight at once across all subscribers. Triggering never
//! blocks and never fails the guest: a full queue drops the value with a warning, a failed
//! delivery is logged, and a subscriber found unreachable (or no longer offering its handler)
//! is pruned. It does not decide which peers to subscribe to: that is
//! [`crate::cluster::registrations`].
//!
//! An app-net (Python) peer subscribes through app-net's `subscription_handler`
//! ([`Events::subscribe_appnet`]); it gets the value's JSON, which the guest adds to a trigger
//! when [`Events::wants_json`] says so, as app-net's arguments: a tuple's elements, else the
//! one value.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netrun_abi::manifest::Record;
use netrun_abi::{CallError, Contract, Outcome, SubscribeRequest, SubscriptionInfo};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::wire::client::{Client, Request, Target};
use crate::wire::message::{CallKind, ChainId, Encoding};

/// Values queued for one subscriber before new ones are dropped.
pub const QUEUE_PER_SUBSCRIBER: usize = 1024;

/// One subscription: the event, the subscriber's peer id (an app-net peer's `host:port`), its
/// handler.
type Key = (String, String, String);

/// A triggered value (bincode, and JSON when an app-net peer subscribes), and the chain of the
/// call that triggered it: a handler that calls back while that call still waits is served
/// (see [`crate::guest::reentry`]).
type Value = (Arc<[u8]>, Option<Arc<[u8]>>, Option<ChainId>);

struct Subscriber {
    queue: mpsc::Sender<Value>,
    /// Tells this registration from a later one under the same key.
    generation: u64,
    /// An app-net peer: it takes the value's JSON.
    appnet: bool,
}

/// This peer's events and their subscribers.
pub struct Events {
    /// `host:port -> group` of this peer, for messages.
    me: String,
    /// The events the module declares, by name.
    declared: BTreeMap<String, Record>,
    subscribers: Mutex<BTreeMap<Key, Subscriber>>,
    shared: Arc<Shared>,
}

/// What delivery tasks share.
struct Shared {
    client: Arc<Client>,
    timeout: Duration,
    limit: Semaphore,
    generations: AtomicU64,
    /// Values queued or being delivered, across subscribers; [`Events::drain`] waits for 0.
    outstanding: AtomicUsize,
    idle: Notify,
}

impl Shared {
    fn done(&self, count: usize) {
        if self.outstanding.fetch_sub(count, Ordering::AcqRel) == count {
            self.idle.notify_waiters();
        }
    }
}

impl Events {
    /// The events of a module, delivered with `client` (the peer's one client) within
    /// `timeout` each, at most `thread_limit` at once.
    pub fn new(
        me: String,
        declared: BTreeMap<String, Record>,
        client: Arc<Client>,
        timeout: Duration,
        thread_limit: usize,
    ) -> Arc<Events> {
        Arc::new(Events {
            me,
            declared,
            subscribers: Mutex::new(BTreeMap::new()),
            shared: Arc::new(Shared {
                client,
                timeout,
                limit: Semaphore::new(thread_limit.max(1)),
                generations: AtomicU64::new(0),
                outstanding: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        })
    }

    /// Registers `subscriber`'s handler (built-in `subscribe`). Returns whether it is new: a
    /// registration that exists already is left as it is, so nothing is delivered twice.
    pub fn subscribe(
        self: &Arc<Self>,
        subscriber: &str,
        request: SubscribeRequest,
    ) -> Result<bool, CallError> {
        let record = self.declared.get(&request.event).ok_or_else(|| {
            self.no_such_event(netrun_abi::names::builtin::SUBSCRIBE, &request.event)
        })?;
        if record.ret != request.accepts {
            return Err(CallError::ContractMismatch {
                peer: self.me.clone(),
                function: format!("event {}", request.event),
                caller: format!("a handler taking {}", request.accepts),
                callee: format!("an event of {}", record.ret),
            });
        }
        let target = Target::from_peer_id(subscriber)?;
        let key = (
            request.event.clone(),
            subscriber.to_string(),
            request.handler.clone(),
        );
        Ok(self.add(key, target, Form::Bincode(request.contract)))
    }

    /// Registers the handler `connection` of the app-net peer at `host:port` for `event`
    /// (app-net's `subscription_handler`). Returns whether it is new.
    pub fn subscribe_appnet(
        self: &Arc<Self>,
        event: &str,
        host: &str,
        port: u16,
        connection: &str,
    ) -> Result<bool, CallError> {
        let record = self.declared.get(event).ok_or_else(|| {
            self.no_such_event(crate::wire::appnet::builtin::SUBSCRIPTION_HANDLER, event)
        })?;
        let address = crate::wire::client::socket_address(host, port);
        let target = Target {
            display: address.clone(),
            address: address.clone(),
        };
        self.shared.client.mark_appnet(&address);
        let key = (event.to_string(), address, connection.to_string());
        // A tuple's elements are app-net's arguments; any other value is the one argument.
        let spread = record.ret.starts_with('(');
        Ok(self.add(key, target, Form::Json { spread }))
    }

    /// Adds the subscription `key`, delivered to `target` in `form`, unless it exists: whether
    /// it is new.
    fn add(self: &Arc<Self>, key: Key, target: Target, form: Form) -> bool {
        let mut subscribers = self.subscribers.lock().expect("subscribers lock");
        if subscribers.contains_key(&key) {
            return false;
        }
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        let (queue, values) = mpsc::channel(QUEUE_PER_SUBSCRIBER);
        let appnet = matches!(form, Form::Json { .. });
        subscribers.insert(
            key.clone(),
            Subscriber {
                queue,
                generation,
                appnet,
            },
        );
        tracing::info!(
            "{} on {}{} subscribed to event {}",
            key.2,
            target.display,
            if appnet { " (app-net)" } else { "" },
            key.0
        );
        let delivery = Delivery {
            events: Arc::downgrade(self),
            shared: self.shared.clone(),
            key,
            generation,
            target,
            form,
        };
        tokio::spawn(delivery.run(values));
        true
    }

    /// The error of a subscription (by `function`) to an event this peer does not declare.
    fn no_such_event(&self, function: &str, event: &str) -> CallError {
        let known: Vec<&str> = self.declared.keys().map(String::as_str).collect();
        CallError::BadArguments {
            function: function.to_string(),
            message: format!(
                "peer {} has no event {event:?}; its events: {}",
                self.me,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }
    }

    /// Whether `event` has a subscriber that takes JSON (an app-net peer).
    pub fn wants_json(&self, event: &str) -> bool {
        let subscribers = self.subscribers.lock().expect("subscribers lock");
        subscribers
            .iter()
            .any(|((name, _, _), s)| s.appnet && name == event)
    }

    pub fn unsubscribe(&self, subscriber: &str, request: &SubscribeRequest) -> bool {
        let key = (
            request.event.clone(),
            subscriber.to_string(),
            request.handler.clone(),
        );
        let removed = self
            .subscribers
            .lock()
            .expect("subscribers lock")
            .remove(&key)
            .is_some();
        if removed {
            tracing::info!(
                "{} on {subscriber} unsubscribed from event {}",
                request.handler,
                request.event
            );
        }
        removed
    }

    /// Queues `value`, triggered by a call of `chain`, for every subscriber of `event`;
    /// returns at once.
    pub fn trigger(
        &self,
        event: &str,
        value: Vec<u8>,
        json: Option<Vec<u8>>,
        chain: Option<ChainId>,
    ) {
        let value: Arc<[u8]> = value.into();
        let json: Option<Arc<[u8]>> = json.map(Into::into);
        let subscribers = self.subscribers.lock().expect("subscribers lock");
        let mut reached = 0;
        for ((_, peer, handler), subscriber) in
            subscribers.iter().filter(|((name, _, _), _)| name == event)
        {
            self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
            match subscriber
                .queue
                .try_send((value.clone(), json.clone(), chain))
            {
                Ok(()) => reached += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.shared.done(1);
                    tracing::warn!(
                        "event {event}: {handler} on {peer} has {QUEUE_PER_SUBSCRIBER} deliveries queued; dropping this one"
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => self.shared.done(1),
            }
        }
        if reached == 0 {
            tracing::debug!("event {event} has no subscribers; nothing to deliver");
        }
    }

    /// Every registration, sorted (for `info`).
    pub fn subscribers(&self) -> Vec<SubscriptionInfo> {
        self.subscribers
            .lock()
            .expect("subscribers lock")
            .keys()
            .map(|(event, peer, handler)| SubscriptionInfo {
                event: event.clone(),
                peer: peer.clone(),
                handler: handler.clone(),
            })
            .collect()
    }

    /// Waits until every queued value has been delivered (or given up on), at most `limit`.
    /// Returns how many were still outstanding when it stopped waiting.
    pub async fn drain(&self, limit: Duration) -> usize {
        let wait = async {
            loop {
                let idle = self.shared.idle.notified();
                if self.shared.outstanding.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.shared.outstanding.load(Ordering::Acquire)
    }

    /// Removes `key` if it is still the registration `generation` made.
    fn prune(&self, key: &Key, generation: u64) {
        let mut subscribers = self.subscribers.lock().expect("subscribers lock");
        if subscribers
            .get(key)
            .is_some_and(|s| s.generation == generation)
        {
            subscribers.remove(key);
        }
    }
}

/// Delivers one subscriber's values in order.
/// How a subscriber takes values.
enum Form {
    /// A netrun peer: bincode, checked against the handler's contract.
    Bincode(Contract),
    /// An app-net peer: JSON arguments; `spread`: the value is a tuple of them.
    Json { spread: bool },
}

struct Delivery {
    events: std::sync::Weak<Events>,
    shared: Arc<Shared>,
    key: Key,
    generation: u64,
    target: Target,
    form: Form,
}

impl Delivery {
    /// The call that delivers `value` (or its `json`) to `handler`; `None` when an app-net
    /// subscriber's value has no JSON.
    fn request<'a>(
        &self,
        handler: &'a str,
        value: &[u8],
        json: Option<&[u8]>,
        chain: Option<ChainId>,
    ) -> Option<Request<'a>> {
        let request = match &self.form {
            Form::Bincode(contract) => Request {
                kind: CallKind::Event,
                chain,
                function: handler,
                encoding: Encoding::Bincode,
                args: value.to_vec(),
                contract: Some(contract.clone()),
            },
            Form::Json { spread } => {
                let value: serde_json::Value = serde_json::from_slice(json?).ok()?;
                let args = match value {
                    serde_json::Value::Array(items) if *spread => items,
                    serde_json::Value::Null if *spread => Vec::new(),
                    one => vec![one],
                };
                Request::json(
                    handler,
                    serde_json::Value::Array(args).to_string().into_bytes(),
                )
            }
        };
        Some(request)
    }

    async fn run(self, mut values: mpsc::Receiver<Value>) {
        let (event, _, handler) = &self.key;
        while let Some((value, json, chain)) = values.recv().await {
            let Some(request) = self.request(handler, &value, json.as_deref(), chain) else {
                self.shared.done(1);
                tracing::warn!(
                    "event {event}: the value has no JSON form for {handler} on {} (app-net)",
                    self.target.display
                );
                continue;
            };
            let outcome = {
                let _permit = self.shared.limit.acquire().await.expect("never closed");
                self.shared
                    .client
                    .call(&self.target, request, self.shared.timeout)
                    .await
            };
            self.shared.done(1);
            let error = match outcome {
                Outcome::Error(e) => e,
                Outcome::Value(_) | Outcome::ValueWithBlobs(_) | Outcome::Flag(_) => continue,
            };
            let gone = matches!(
                error,
                CallError::PeerUnreachable { .. }
                    | CallError::InvalidConnection { .. }
                    | CallError::ContractMismatch { .. }
            );
            if !gone {
                tracing::warn!("event {event}: delivery to {handler} failed: {error}");
                continue;
            }
            tracing::warn!(
                "event {event}: dropping subscriber {handler} on {}: {error}",
                self.target.display
            );
            if let Some(events) = self.events.upgrade() {
                events.prune(&self.key, self.generation);
            }
            break;
        }
        // Pruned or unsubscribed: what is still queued will not be delivered.
        values.close();
        let mut dropped = 0;
        while values.try_recv().is_ok() {
            dropped += 1;
        }
        if dropped > 0 {
            self.shared.done(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use netrun_abi::manifest::{ItemKind, Param};
    use netrun_abi::peer_id;

    use super::*;
    use crate::wire::message::Hello;

    fn events() -> Arc<Events> {
        let news = Record::new(
            ItemKind::Event,
            "news",
            "publish",
            vec![Param {
                name: "headline".into(),
                ty: "String".into(),
            }],
            "String",
        );
        Events::new(
            "127.0.0.1:3010 -> None".into(),
            BTreeMap::from([("news".to_string(), news)]),
            Arc::new(Client::new(Hello::client(1024), 1024, None)),
            Duration::from_secs(1),
            5,
        )
    }

    fn request(event: &str, accepts: &str) -> SubscribeRequest {
        SubscribeRequest {
            event: event.into(),
            handler: "on_news".into(),
            contract: Contract {
                fingerprint: 1,
                signature: format!("({accepts}) -> ()"),
            },
            accepts: accepts.into(),
        }
    }

    #[test]
    fn a_handler_of_another_type_or_an_unknown_event_is_refused() {
        let events = events();
        let subscriber = peer_id::encode("127.0.0.1", 3011, "None");
        let Err(CallError::ContractMismatch { caller, callee, .. }) =
            events.subscribe(&subscriber, request("news", "u32"))
        else {
            panic!("expected a contract mismatch");
        };
        assert_eq!(
            (caller.as_str(), callee.as_str()),
            ("a handler taking u32", "an event of String")
        );
        let Err(CallError::BadArguments { message, .. }) =
            events.subscribe(&subscriber, request("weather", "String"))
        else {
            panic!("expected a refusal");
        };
        assert!(message.contains("no event \"weather\"") && message.contains("news"));
        assert!(events.subscribers().is_empty());
    }

    #[tokio::test]
    async fn subscribing_twice_registers_once() {
        let events = events();
        let subscriber = peer_id::encode("127.0.0.1", 3011, "None");
        assert_eq!(
            events.subscribe(&subscriber, request("news", "String")),
            Ok(true)
        );
        assert_eq!(
            events.subscribe(&subscriber, request("news", "String")),
            Ok(false)
        );
        assert_eq!(events.subscribers().len(), 1);
        assert!(events.unsubscribe(&subscriber, &request("news", "String")));
        assert!(events.subscribers().is_empty());
    }
}
