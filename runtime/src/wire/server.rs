//! The serving side of a peer: accept connections, shake hands, read calls, hand each to a
//! [`Dispatch`] and send its reply on the same connection.
//!
//! A connection whose first byte is app-net's (`{`) is served one app-net request instead
//! ([`crate::wire::appnet`]), through the same dispatcher.
//!
//! Owns the accept loop, the limits of what it admits ([`Admission`]: connections in total and
//! per address, the handshake's time, idle connections, calls in flight per connection) and
//! the per-connection read loop. Calls on one connection run concurrently and their replies go
//! back as they finish, matched by id. A connection that breaks the protocol (oversized frame,
//! garbage, a reply where a call was expected) is closed; the peer keeps serving the others.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netrun_abi::{CallError, Outcome};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::wire::appnet;
use crate::wire::connection::{self, ConnectionError, FrameSender, MessageReader};
use crate::wire::frame::FrameError;
use crate::wire::message::{Call, Hello, Message, MessageError, Reply};
use crate::wire::secure::ClusterKey;

/// How much a peer's server takes on, and for how long: each is a flag of `netrun run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A connection that has not finished its handshake by then is dropped: a client silent,
    /// or dribbling its hello a byte at a time.
    pub handshake: Duration,
    /// A connection with no call in flight and nothing received for this long is closed.
    pub idle: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub connections: usize,
    /// Connections served at once from one address; more are closed at once.
    pub connections_per_address: usize,
    /// Calls served at once on one connection; the next waits (unread) for a slot, so a
    /// client that sends calls without reading replies cannot grow this peer's memory.
    pub calls_per_connection: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            connections: 1024,
            connections_per_address: 256,
            calls_per_connection: 256,
        }
    }
}

/// What a peer's server admits.
#[derive(Debug, Clone)]
pub struct Admission {
    pub limits: ConnectionLimits,
    /// Largest frame accepted (and sent).
    pub max_frame: usize,
    /// The cluster secret's keys: every connection must be secured with them.
    pub key: Option<ClusterKey>,
    /// This peer's module hash, when it serves only peers running the same module
    /// (`--require-same-module`; clients that run no module are served).
    pub same_module: Option<String>,
    /// Whether connections that speak app-net are served ([`appnet`]); refused, with the
    /// reason in app-net's error packet, when not.
    pub appnet: bool,
}

/// What the server hands each arriving call to, and waits on for the reply. The server owns
/// sockets and ids; what a call runs is the dispatcher's business.
pub trait Dispatch: Send + Sync + 'static {
    /// Runs `call`, sent by the peer `caller` (`None` for a client that is not a peer, such as
    /// the CLI), and says what it produced.
    fn dispatch(&self, call: Call, caller: Option<&str>) -> impl Future<Output = Outcome> + Send;

    /// Runs a request of an app-net peer (or client) at `from`, and says what to answer.
    fn appnet(
        &self,
        request: appnet::Request,
        from: SocketAddr,
    ) -> impl Future<Output = appnet::Reply> + Send;
}

/// Accepts and serves connections within `admission` until `shutdown` resolves, handing
/// calls to `router`.
pub async fn run<D: Dispatch>(
    listener: TcpListener,
    hello: Hello,
    router: Arc<D>,
    admission: Admission,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(admission.limits.connections));
    let admission = Arc::new(admission);
    let hello = Arc::new(hello);
    let refusals = Arc::new(Refusals::default());
    let per_address = Arc::new(PerAddress::default());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => permit.expect("semaphore never closes"),
            () = &mut shutdown => return,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let most = admission.limits.connections_per_address;
        let Some(counted) = per_address.admit(remote.ip(), most) else {
            if refusals.first_from(remote.ip()) {
                tracing::warn!(
                    "refusing connections from {} beyond {most} at once (--max-connections-per-address)",
                    remote.ip()
                );
            }
            continue;
        };
        let (hello, router, admission) = (hello.clone(), router.clone(), admission.clone());
        let refusals = refusals.clone();
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // One handshake time for the first byte and whatever follows it.
            let deadline = tokio::time::Instant::now() + admission.limits.handshake;
            let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut stream = stream;
            match tokio::time::timeout_at(deadline, first_byte(&stream)).await {
                Ok(Some(first)) if appnet::is_appnet(first) => {
                    serve_appnet(&mut stream, remote, &*router, &admission, left()).await;
                    return;
                }
                Ok(Some(_)) => {}
                // Closed at once (app-net's port scan does that), or silent: nothing to serve.
                Ok(None) | Err(_) => return,
            }
            let accepted = connection::accept(
                stream,
                &hello,
                left(),
                admission.max_frame,
                admission.key.as_ref(),
                admission.same_module.as_deref(),
            )
            .await;
            let served = match accepted {
                Ok((reader, sender, caller)) => {
                    serve_calls(reader, sender, caller, router, &admission).await
                }
                Err(ConnectionError::Authentication(why)) => {
                    if refusals.first_from(remote.ip()) {
                        tracing::warn!(
                            "refusing connections from {}: authentication failed: {why}",
                            remote.ip()
                        );
                    }
                    Err(format!("authentication failed: {why}"))
                }
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = served {
                tracing::debug!("connection from {remote} ended: {e}");
            }
            drop((permit, counted));
        });
    }
}

/// The first byte the client sent, left unread; `None` if it closed without a word.
async fn first_byte(stream: &tokio::net::TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}

/// Serves the one request of an app-net connection from `remote`, read within `limit`, and
/// closes it.
async fn serve_appnet<D: Dispatch>(
    stream: &mut tokio::net::TcpStream,
    remote: SocketAddr,
    router: &D,
    admission: &Admission,
    limit: Duration,
) {
    let reply = if !admission.appnet {
        tracing::debug!("refusing an app-net request from {remote}: app-net interop is off");
        appnet::Reply::Error(
            "this netrun peer does not serve app-net requests: it has a cluster secret or was started with --no-appnet (--appnet turns them on)".into(),
        )
    } else {
        match appnet::read_request(stream, admission.max_frame, limit).await {
            Ok(request) => router.appnet(request, remote).await,
            Err(e) => {
                tracing::debug!("app-net request from {remote}: {e}");
                appnet::Reply::Error(e.to_string())
            }
        }
    };
    if let Err(e) = appnet::write_reply(stream, &reply).await {
        tracing::debug!("cannot answer the app-net request from {remote}: {e}");
    }
}

/// The addresses refused, each logged once (forgotten past [`REFUSALS`]).
#[derive(Default)]
struct Refusals(Mutex<HashSet<IpAddr>>);

/// Addresses remembered as refused before the list starts over.
const REFUSALS: usize = 4096;

impl Refusals {
    /// Whether this is the first refusal of `ip` (to log it once).
    fn first_from(&self, ip: IpAddr) -> bool {
        let mut seen = self.0.lock().expect("refusals lock");
        if seen.len() >= REFUSALS {
            seen.clear();
        }
        seen.insert(ip)
    }
}

/// Connections open per address.
#[derive(Default)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted against its address, until dropped.
struct Counted {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    /// Counts a connection from `ip`, unless `most` are open from it already.
    fn admit(&self, ip: IpAddr, most: usize) -> Option<Counted> {
        let mut open = self.0.lock().expect("per-address lock");
        let count = open.entry(ip).or_default();
        if *count >= most {
            return None;
        }
        *count += 1;
        Some(Counted {
            ip,
            open: self.0.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("per-address lock");
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Reads the calls of one connection that shook hands, hands each to `router` and sends its
/// reply, at most `calls_per_connection` at once, until the connection ends or stays idle.
async fn serve_calls<D: Dispatch>(
    mut reader: MessageReader,
    sender: FrameSender,
    remote: Hello,
    router: Arc<D>,
    admission: &Admission,
) -> Result<(), String> {
    let caller: Option<Arc<str>> = remote.peer_id.map(Arc::from);
    let most = admission.limits.calls_per_connection.max(1);
    let slots = Arc::new(Semaphore::new(most));
    loop {
        // A slot first: a connection with all its calls running is not read meanwhile.
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let next = if slots.available_permits() == most - 1 {
            // Nothing in flight: an idle connection ends here.
            match tokio::time::timeout(admission.limits.idle, reader.next()).await {
                Ok(next) => next,
                Err(_) => return Err(format!("idle for {:?}", admission.limits.idle)),
            }
        } else {
            reader.next().await
        };
        match next {
            Ok(Message::Call(call)) => {
                let (router, sender, caller) = (router.clone(), sender.clone(), caller.clone());
                tokio::spawn(async move {
                    let id = call.id;
                    let outcome = router.dispatch(call, caller.as_deref()).await;
                    send_reply(&sender, id, outcome).await;
                    drop(slot);
                });
            }
            Ok(other) => {
                return Err(format!(
                    "protocol error: {} where a call was expected",
                    connection::describe(&other)
                ));
            }
            Err(MessageError::Frame(FrameError::Closed)) => return Ok(()),
            Err(MessageError::Frame(e @ FrameError::TooLarge { .. })) => {
                tracing::warn!("closing a connection: {e}");
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends a reply; one too large for a frame becomes a `FrameTooLarge` error reply instead.
async fn send_reply(sender: &FrameSender, id: u64, outcome: Outcome) {
    let reply = Message::Reply(Reply { id, outcome });
    match sender.send(reply).await {
        Err(MessageError::Frame(FrameError::TooLarge { size, max })) => {
            let error = CallError::FrameTooLarge {
                size: size as u64,
                max: max as u64,
            };
            let reply = Message::Reply(Reply {
                id,
                outcome: Outcome::Error(error),
            });
            let _ = sender.send(reply).await;
        }
        Err(e) => tracing::debug!("cannot send reply {id}: {e}"),
        Ok(()) => {}
    }
}
