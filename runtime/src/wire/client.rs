//! The calling side: a pool of persistent connections, one per remote peer, each carrying many
//! calls at once, matched to their replies by request id.
//!
//! Owns outgoing connections and the table of calls waiting for a reply. It turns every way a
//! call can fail into a [`CallError`] naming the peer: unreachable (nothing was sent), a
//! timeout naming its stage (connecting, or waiting for the reply; the callee names the queued
//! and running stages itself), the outcome unknown (the connection was lost after the call was
//! sent), a frame too large. A call is sent at most once: never again after its connection is
//! lost. It never decides what a function is or runs one.
//!
//! A call carries the time it has left. The caller keeps a margin of it ([`time_to_give`]), so
//! that a callee that runs out of time answers, naming where it was, before the caller stops
//! waiting.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netrun_abi::peer_id::{self, PeerAddress};
use netrun_abi::{CallError, Contract, Outcome, TimeoutStage};
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::wire::appnet;
use crate::wire::connection::{self, ConnectionError, MessageReader};
use crate::wire::frame::FrameError;
use crate::wire::message::{Call, CallKind, ChainId, Encoding, Hello, Message, MessageError};
use crate::wire::secure::ClusterKey;
use crate::wire::spin::{self, RecentWaits};
use crate::wire::writer::FrameSender;

/// Longest time spent connecting and shaking hands, whatever the call's timeout.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Most of the time a caller keeps for itself when it gives a call its time (see
/// [`time_to_give`]).
const REPLY_MARGIN: Duration = Duration::from_millis(100);

/// Where a call goes: the address to dial and the name to show people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// `host:port -> group`, the readable form of the peer id.
    pub display: String,
}

impl Target {
    /// The target a peer id names.
    pub fn from_peer_id(id: &str) -> Result<Target, CallError> {
        let address = peer_id::decode(id)?;
        Ok(Target::from_address(&address))
    }

    /// The peer at `address`.
    pub fn from_address(address: &PeerAddress) -> Target {
        Target {
            address: socket_address(&address.host, address.port),
            display: address.to_string(),
        }
    }

    /// A peer id, or `host:port` (`[v6]:port`) for a peer whose group is not known yet.
    pub fn parse(text: &str) -> Result<Target, CallError> {
        let by_id = Target::from_peer_id(text);
        if by_id.is_ok() {
            return by_id;
        }
        let host_port = text.rsplit_once(':').and_then(|(host, port)| {
            let port: u16 = port.parse().ok()?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            (!host.is_empty()).then(|| socket_address(host, port))
        });
        match host_port {
            Some(address) => Ok(Target {
                display: address.clone(),
                address,
            }),
            None => Err(CallError::InvalidPeerId {
                id: text.to_string(),
                reason: "neither a peer id nor HOST:PORT".to_string(),
            }),
        }
    }
}

/// `host:port` as a socket address string: an IPv6 host goes in brackets.
pub fn socket_address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What a call sends.
pub struct Request<'a> {
    pub kind: CallKind,
    /// The chain this call is part of, if it is made for a call being run.
    pub chain: Option<ChainId>,
    pub function: &'a str,
    pub encoding: Encoding,
    pub args: Vec<u8>,
    pub contract: Option<Contract>,
}

impl<'a> Request<'a> {
    /// A call of `function` through the JSON bridge, with `args`, a JSON array: what the CLI
    /// and the benchmark send.
    pub fn json(function: &'a str, args: Vec<u8>) -> Request<'a> {
        Request {
            kind: CallKind::Function,
            chain: None,
            function,
            encoding: Encoding::Json,
            args,
            contract: None,
        }
    }
}

/// What a call's waiter gets: the reply's outcome, or why the connection was lost after the
/// call was sent.
type Answer = Result<Outcome, String>;

/// The calls of one connection waiting for their reply, by id: FxHash, as the ids are this
/// side's own (a peer's reply can only look one up), and a call inserts and removes one.
type Pending = FxHashMap<u64, oneshot::Sender<Answer>>;

/// The connection to one address, if any; its async lock is held only while connecting.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// One live connection and its calls in flight.
struct Link {
    sender: FrameSender,
    /// Calls waiting for a reply; `None` once the connection is gone.
    pending: Mutex<Option<Pending>>,
    next_id: AtomicU64,
    /// The task reading replies, stopped when the link is given up.
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Link {
    fn is_alive(&self) -> bool {
        !self.sender.is_closed() && self.pending.lock().expect("pending lock").is_some()
    }

    /// Registers a call: its id, where its answer comes, and whether it is the only call
    /// waiting on this connection; `None` if the connection is already gone.
    fn register(&self) -> Option<(u64, oneshot::Receiver<Answer>, bool)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut pending = self.pending.lock().expect("pending lock");
        let pending = pending.as_mut()?;
        pending.insert(id, tx);
        Some((id, rx, pending.len() == 1))
    }

    /// How many calls wait for their reply.
    fn waiting(&self) -> usize {
        self.pending
            .lock()
            .expect("pending lock")
            .as_ref()
            .map_or(0, |pending| pending.len())
    }

    fn forget(&self, id: u64) {
        if let Some(pending) = self.pending.lock().expect("pending lock").as_mut() {
            pending.remove(&id);
        }
    }

    /// Gives the connection up: stops reading replies and tells every call still waiting that
    /// its outcome is unknown, because of `reason`.
    fn close(&self, reason: &str) {
        if let Some(reader) = self.reader.lock().expect("reader lock").take() {
            reader.abort();
        }
        fail_waiting(self, reason);
    }
}

/// Tells every call still waiting on `link` that its outcome is unknown, because of `reason`;
/// no call can be registered on it after.
fn fail_waiting(link: &Link, reason: &str) {
    let orphans = link
        .pending
        .lock()
        .expect("pending lock")
        .take()
        .unwrap_or_default();
    for (_, waiter) in orphans {
        let _ = waiter.send(Err(reason.to_string()));
    }
}

/// Reads replies until the connection ends, then tells every call still waiting that its
/// outcome is unknown.
///
/// While replies have lately come soon after the reader began to wait for them and at most
/// one call waits (a caller making one call after another), it polls for the next awake for a
/// moment before sleeping ([`spin`]): the socket is then read as soon as a reply is in, not
/// after epoll has said so. With more calls waiting, their replies come in batches, and
/// looking at the socket between them would only take CPU from the peers answering them.
async fn read_replies(link: Arc<Link>, mut reader: MessageReader) {
    let mut waits = RecentWaits::slow();
    let reason = loop {
        // Only a wait with one call at most waiting decides whether to poll, and only such a
        // wait is timed: with more, replies come in batches, mostly read already, and two clock
        // reads a reply were a seventh of the reader's CPU at 64 in flight.
        let started = (link.waiting() <= 1).then(Instant::now);
        let spin = match started {
            Some(_) => waits.spin(),
            None => Duration::ZERO,
        };
        let next = spin::spin_then_wait(reader.next(), spin).await;
        if let Some(started) = started {
            waits.record(started.elapsed());
        }
        match next {
            Ok(Message::Reply(reply)) => {
                // The waiter, and whether no other call waits, under one lock.
                let (waiter, none_left) = {
                    let mut pending = link.pending.lock().expect("pending lock");
                    match pending.as_mut() {
                        Some(pending) => (pending.remove(&reply.id), pending.is_empty()),
                        None => (None, true),
                    }
                };
                if let Some(waiter) = waiter {
                    let _ = waiter.send(Ok(reply.outcome));
                }
                if none_left {
                    // The caller just woken runs first, before this task looks at the
                    // socket again: a caller making one call after another gets its reply
                    // one `recv` sooner (docs/performance.md).
                    tokio::task::yield_now().await;
                }
            }
            Ok(other) => {
                break format!(
                    "peer sent {} where a reply was expected",
                    connection::describe(&other)
                );
            }
            Err(MessageError::Frame(FrameError::Closed)) => {
                break "the connection closed before the reply".to_string();
            }
            Err(MessageError::Frame(FrameError::TooLarge { size, max })) => {
                break format!(
                    "the peer sent a frame of {size} bytes, over the limit of {max} bytes"
                );
            }
            Err(e) => break format!("the connection failed: {e}"),
        }
    };
    fail_waiting(&link, &reason);
}

/// How a peer is reached ([`Client::reach`]).
enum Reached {
    /// On its live connection, found without waiting.
    Link(Arc<Link>),
    /// On a connection made (or waited for) just now: time has passed since the call began.
    Made(Arc<Link>),
    /// In app-net's format, on a connection per call.
    AppNet,
    /// Not by the deadline: connecting or the handshake took longer.
    TimedOut,
}

/// Persistent, multiplexed connections to other peers, shared by everything that calls out.
pub struct Client {
    hello: Hello,
    max_frame: usize,
    /// The cluster secret's keys: every connection is secured with them.
    key: Option<ClusterKey>,
    /// One slot per address.
    links: Mutex<HashMap<String, Slot>>,
    /// Whether it calls app-net peers (in app-net's format, one connection per call).
    appnet: bool,
    /// The addresses found to speak app-net.
    appnet_peers: Mutex<HashSet<String>>,
    /// Whether `appnet_peers` has any, so that calls in a cluster without app-net peers take
    /// no lock to learn it.
    appnet_found: AtomicBool,
}

impl Client {
    /// A client that introduces itself with `hello` and, with `key`, secures every connection.
    /// It calls app-net peers when it has no key.
    pub fn new(hello: Hello, max_frame: usize, key: Option<ClusterKey>) -> Client {
        Client {
            hello,
            max_frame,
            appnet: key.is_none(),
            key,
            links: Mutex::new(HashMap::new()),
            appnet_peers: Mutex::new(HashSet::new()),
            appnet_found: AtomicBool::new(false),
        }
    }

    /// The same client, calling app-net peers or not.
    pub fn with_appnet(self, appnet: bool) -> Client {
        Client { appnet, ..self }
    }

    /// Whether the peer at `address` (`host:port`) was found to speak app-net.
    fn speaks_appnet(&self, address: &str) -> bool {
        self.appnet
            && self.appnet_found.load(Ordering::Acquire)
            && self
                .appnet_peers
                .lock()
                .expect("app-net lock")
                .contains(address)
    }

    /// Notes that the peer at `address` speaks app-net (discovery found it so).
    pub fn mark_appnet(&self, address: &str) {
        let mut peers = self.appnet_peers.lock().expect("app-net lock");
        peers.insert(address.to_string());
        self.appnet_found.store(true, Ordering::Release);
    }

    /// What the app-net peer `target` offers, as its `info` lists it (nothing if it does not
    /// answer by `deadline`).
    async fn appnet_connections(&self, target: &Target, deadline: Instant) -> Vec<String> {
        let info = appnet::Request::new(appnet::builtin::INFO, Vec::new());
        let timeout = deadline.saturating_duration_since(Instant::now());
        match appnet::call(&target.address, &info, timeout, self.max_frame).await {
            Ok(appnet::Reply::Value(info)) => info["connections"]
                .as_array()
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Calls `request` on the app-net peer `target` by `deadline`: a JSON call of a function,
    /// in app-net's format, on a connection of its own.
    async fn call_appnet(
        &self,
        target: &Target,
        request: Request<'_>,
        deadline: Instant,
    ) -> Outcome {
        let function = request.function;
        let refuse = |message: &str| {
            Outcome::Error(CallError::BadArguments {
                function: function.to_string(),
                message: format!("{} is an app-net (Python) peer: {message}", target.display),
            })
        };
        if request.kind != CallKind::Function {
            return refuse("it takes no netrun event deliveries");
        }
        if request.encoding != Encoding::Json {
            return Outcome::Error(CallError::AppNetPeer {
                peer: target.display.clone(),
                function: function.to_string(),
            });
        }
        let args: Vec<serde_json::Value> = match serde_json::from_slice(&request.args) {
            Ok(args) => args,
            Err(e) => return refuse(&format!("the arguments are not a JSON array: {e}")),
        };
        let call = appnet::Request::new(appnet::connection_name(function), args);
        let timeout = deadline.saturating_duration_since(Instant::now());
        match appnet::call(&target.address, &call, timeout, self.max_frame).await {
            Ok(appnet::Reply::Flag(flag))
                if flag == netrun_abi::names::flag::INVALID_CONNECTION =>
            {
                let available = self.appnet_connections(target, deadline).await;
                Outcome::Error(CallError::InvalidConnection {
                    peer: target.display.clone(),
                    function: function.to_string(),
                    available,
                })
            }
            Ok(reply) => reply.into_outcome(&target.display, function),
            Err(appnet::CallFailure::NotSent(reason)) => unreachable_now(target, &reason),
            Err(appnet::CallFailure::Lost(reason)) => lost(target, function, reason),
            Err(appnet::CallFailure::TimedOut(after)) => Outcome::Error(CallError::Timeout {
                peer: target.display.clone(),
                function: function.to_string(),
                after_ms: after.as_millis() as u64,
                stage: TimeoutStage::Reply,
            }),
        }
    }

    /// Calls `request.function` on `target`, waiting at most `timeout` for connection and
    /// reply, and giving the call what is left of it (less a margin, see [`time_to_give`]).
    pub async fn call(&self, target: &Target, request: Request<'_>, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let deadline = started + timeout;
        let timed_out = |stage| {
            Outcome::Error(CallError::Timeout {
                peer: target.display.clone(),
                function: request.function.to_string(),
                after_ms: started.elapsed().as_millis() as u64,
                stage,
            })
        };
        // The clock is read again only if connecting took time: on a live connection, `started`
        // is now.
        let (link, now) = match self.reach(target, deadline).await {
            Ok(Reached::Link(link)) => (link, started),
            Ok(Reached::Made(link)) => (link, Instant::now()),
            // Boxed, as rare: a call on a live connection carries none of its state.
            Ok(Reached::AppNet) => {
                return Box::pin(self.call_appnet(target, request, deadline)).await;
            }
            Ok(Reached::TimedOut) => return timed_out(TimeoutStage::Connecting),
            Err(e) => return Outcome::Error(e),
        };
        let Some((id, reply, alone)) = link.register() else {
            return unreachable_now(target, "the connection closed");
        };
        // Dropped (timeout) or finished: either way the table must not keep the entry.
        let _forget = ForgetOnDrop { link: &link, id };
        let function = request.function;
        let call = Message::Call(Call {
            id,
            chain: request.chain,
            kind: request.kind,
            function: function.to_string(),
            encoding: request.encoding,
            args: request.args,
            contract: request.contract,
            time_left_ms: Some(time_to_give(deadline, now).as_millis() as u64),
        });
        match link.sender.send_alone_if(call, alone).await {
            Ok(()) => {}
            Err(MessageError::Frame(FrameError::TooLarge { size, max })) => {
                return Outcome::Error(CallError::FrameTooLarge {
                    size: size as u64,
                    max: max as u64,
                });
            }
            Err(e) => return unreachable_now(target, &e.to_string()),
        }
        match tokio::time::timeout_at(deadline.into(), reply).await {
            // The callee's own timeout, measured here: from the caller's start.
            Ok(Ok(Ok(Outcome::Error(CallError::Timeout { stage, .. })))) => timed_out(stage),
            Ok(Ok(Ok(outcome))) => outcome,
            Ok(Ok(Err(reason))) => lost(target, function, reason),
            Ok(Err(_)) => lost(target, function, "the connection closed".to_string()),
            Err(_) => timed_out(TimeoutStage::Reply),
        }
    }

    /// Makes the connection to `target` now (its handshake within `timeout`), so that the next
    /// call finds it made: `netrun bench` connects before its clock starts. Nothing to do for
    /// an app-net peer, which takes a connection per call.
    pub async fn connect(&self, target: &Target, timeout: Duration) -> Result<(), CallError> {
        match self.reach(target, Instant::now() + timeout).await? {
            Reached::Link(_) | Reached::Made(_) | Reached::AppNet => Ok(()),
            Reached::TimedOut => Err(CallError::PeerUnreachable {
                peer: target.display.clone(),
                reason: format!("no connection within {} ms", timeout.as_millis()),
            }),
        }
    }

    /// How `target` is reached by `deadline`: its live connection (made if there is none), or
    /// in app-net's format, known before or found by the handshake.
    async fn reach(&self, target: &Target, deadline: Instant) -> Result<Reached, CallError> {
        if self.speaks_appnet(&target.address) {
            return Ok(Reached::AppNet);
        }
        if let Some(link) = self.live_link(&target.address) {
            return Ok(Reached::Link(link));
        }
        // Connecting is boxed: a call's future on a live connection, allocated and moved with
        // every call, would otherwise carry the handshake's state too (docs/performance.md).
        let connecting = Box::pin(self.link(target));
        match tokio::time::timeout_at(deadline.into(), connecting).await {
            Ok(Ok(link)) => Ok(Reached::Made(link)),
            // The handshake found it speaks app-net.
            Ok(Err(_)) if self.speaks_appnet(&target.address) => Ok(Reached::AppNet),
            Ok(Err(e)) => Err(e),
            Err(_) => Ok(Reached::TimedOut),
        }
    }

    /// The live connection to `address`, if there is one and no one is connecting to it: what
    /// most calls find, without waiting.
    fn live_link(&self, address: &str) -> Option<Arc<Link>> {
        let links = self.links.lock().expect("links lock");
        let slot = links.get(address)?.try_lock().ok()?;
        slot.as_ref().filter(|link| link.is_alive()).cloned()
    }

    /// The live connection to `target`, connecting if there is none.
    async fn link(&self, target: &Target) -> Result<Arc<Link>, CallError> {
        let slot = {
            let mut links = self.links.lock().expect("links lock");
            match links.get(&target.address) {
                Some(slot) => slot.clone(),
                None => links.entry(target.address.clone()).or_default().clone(),
            }
        };
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_alive()) {
            return Ok(link.clone());
        }
        let (reader, sender, _remote) = connection::connect(
            &target.address,
            &self.hello,
            CONNECT_LIMIT,
            self.max_frame,
            self.key.as_ref(),
        )
        .await
        .map_err(|e| {
            if matches!(e, ConnectionError::AppNet) {
                if self.appnet {
                    self.mark_appnet(&target.address);
                } else {
                    return CallError::PeerUnreachable {
                        peer: target.display.clone(),
                        reason: format!("{e}, and app-net interop is off on this side (it has a cluster secret, or --no-appnet; a peer's --appnet turns it on)"),
                    };
                }
            }
            connect_error(target, e)
        })?;
        let link = Arc::new(Link {
            sender,
            pending: Mutex::new(Some(Pending::default())),
            next_id: AtomicU64::new(1),
            reader: Mutex::new(None),
        });
        let reading = tokio::spawn(read_replies(link.clone(), reader));
        *link.reader.lock().expect("reader lock") = Some(reading.abort_handle());
        *slot = Some(link.clone());
        Ok(link)
    }

    /// Gives up the connection to `address` (`host:port`), if there is one: the peer there was
    /// declared down, and a connection to it may be dead without knowing it. Calls waiting on
    /// it learn that their outcome is unknown; the next call connects afresh.
    pub fn give_up(&self, address: &str, reason: &str) {
        let slot = self.links.lock().expect("links lock").remove(address);
        let Some(slot) = slot else {
            return;
        };
        // A slot being connected holds no link yet.
        if let Ok(link) = slot.try_lock()
            && let Some(link) = link.as_ref()
        {
            link.close(reason);
        }
    }
}

struct ForgetOnDrop<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.link.forget(self.id);
    }
}

/// What a call may be given, `now`, of the time until `deadline`: all but a margin of a
/// tenth, at most 100 ms, so that the callee's answer when it runs out (naming whether the
/// call was queued or running) reaches the caller before the caller's own deadline.
pub fn time_to_give(deadline: Instant, now: Instant) -> Duration {
    let left = deadline.saturating_duration_since(now);
    left - (left / 10).min(REPLY_MARGIN)
}

/// The connection to `target` was lost after `function` was sent.
fn lost(target: &Target, function: &str, reason: String) -> Outcome {
    Outcome::Error(CallError::OutcomeUnknown {
        peer: target.display.clone(),
        function: function.to_string(),
        reason,
    })
}

fn unreachable_now(target: &Target, reason: &str) -> Outcome {
    Outcome::Error(CallError::PeerUnreachable {
        peer: target.display.clone(),
        reason: reason.to_string(),
    })
}

fn connect_error(target: &Target, e: ConnectionError) -> CallError {
    let reason = match e {
        ConnectionError::Connect(io) => io.to_string(),
        other => other.to_string(),
    };
    CallError::PeerUnreachable {
        peer: target.display.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_dial_the_address_in_the_id() {
        let v4 = Target::from_peer_id(&peer_id::encode("127.0.0.1", 3010, "None")).unwrap();
        assert_eq!(v4.address, "127.0.0.1:3010");
        assert_eq!(v4.display, "127.0.0.1:3010 -> None");
        let v6 = Target::from_peer_id(&peer_id::encode("::1", 3011, "g")).unwrap();
        assert_eq!(v6.address, "[::1]:3011");
        assert!(v6.address.parse::<std::net::SocketAddr>().is_ok());
    }

    #[test]
    fn targets_are_peer_ids_or_host_port() {
        let id = peer_id::encode("127.0.0.1", 3012, "hubs");
        assert_eq!(Target::parse(&id).unwrap().address, "127.0.0.1:3012");
        let plain = Target::parse("127.0.0.1:3010").unwrap();
        assert_eq!(
            (plain.address.as_str(), plain.display.as_str()),
            ("127.0.0.1:3010", "127.0.0.1:3010")
        );
        assert_eq!(Target::parse("[::1]:3010").unwrap().address, "[::1]:3010");
        for bad in ["nonsense", "host:port", ":3010", "127.0.0.1:99999"] {
            let Err(CallError::InvalidPeerId { id, reason }) = Target::parse(bad) else {
                panic!("{bad} parsed");
            };
            assert_eq!(
                (id.as_str(), reason.as_str()),
                (bad, "neither a peer id nor HOST:PORT")
            );
        }
    }

    #[test]
    fn a_call_is_given_its_time_less_a_margin() {
        let now = Instant::now();
        let given = |ms: u64| time_to_give(now + Duration::from_millis(ms), now).as_millis();
        // A tenth, up to 100 ms.
        assert_eq!(given(500), 450);
        assert_eq!(given(1000), 900);
        assert_eq!(given(30_000), 29_900);
        assert_eq!(time_to_give(now, now), Duration::ZERO);
    }
}
