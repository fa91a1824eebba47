//! The serving side of a peer: accept connections, shake hands, read calls, hand each to a
//! [`Dispatch`] and send its reply on the same connection.
//!
//! Owns the accept loop, the bound on open connections and the per-connection read loop. Calls
//! on one connection run concurrently and their replies go back as they finish, matched by id.
//! A connection that breaks the protocol (oversized frame, garbage, a reply where a call was
//! expected) is closed; the peer keeps serving the others.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netrun_abi::{CallError, Outcome};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::wire::connection::{self, ConnectionError, FrameSender, MessageReader};
use crate::wire::frame::FrameError;
use crate::wire::message::{Call, Hello, Message, MessageError, Reply};
use crate::wire::secure::ClusterKey;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a new connection has to say hello.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// What the server hands each arriving call to, and waits on for the reply. The server owns
/// sockets and ids; what a call runs is the dispatcher's business.
pub trait Dispatch: Send + Sync + 'static {
    /// Runs `call`, sent by the peer `caller` (`None` for a client that is not a peer, such as
    /// the CLI), and says what it produced.
    fn dispatch(&self, call: Call, caller: Option<&str>) -> impl Future<Output = Outcome> + Send;
}

/// Accepts and serves connections until `shutdown` resolves, handing calls to `router`.
pub async fn run<D: Dispatch>(
    listener: TcpListener,
    hello: Hello,
    router: Arc<D>,
    max_frame: usize,
    key: Option<ClusterKey>,
    shutdown: impl Future<Output = ()>,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let hello = Arc::new(hello);
    let refusals = Arc::new(Refusals::default());
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
        let (hello, router, key) = (hello.clone(), router.clone(), key.clone());
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let accepted =
                connection::accept(stream, &hello, HANDSHAKE_LIMIT, max_frame, key.as_ref()).await;
            let served = match accepted {
                Ok((reader, sender, caller)) => serve_calls(reader, sender, caller, router).await,
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
            drop(permit);
        });
    }
}

/// The addresses refused for authentication, each logged once (forgotten past [`REFUSALS`]).
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

/// Reads the calls of one connection that shook hands, hands each to `router` and sends its
/// reply, until the connection ends.
async fn serve_calls<D: Dispatch>(
    mut reader: MessageReader,
    sender: FrameSender,
    remote: Hello,
    router: Arc<D>,
) -> Result<(), String> {
    let caller: Option<Arc<str>> = remote.peer_id.map(Arc::from);
    loop {
        match reader.next().await {
            Ok(Message::Call(call)) => {
                let (router, sender, caller) = (router.clone(), sender.clone(), caller.clone());
                tokio::spawn(async move {
                    let id = call.id;
                    let outcome = router.dispatch(call, caller.as_deref()).await;
                    send_reply(&sender, id, outcome).await;
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
    match sender.send(&reply).await {
        Err(MessageError::Frame(FrameError::TooLarge { size, max })) => {
            let error = CallError::FrameTooLarge {
                size: size as u64,
                max: max as u64,
            };
            let reply = Message::Reply(Reply {
                id,
                outcome: Outcome::Error(error),
            });
            let _ = sender.send(&reply).await;
        }
        Err(e) => tracing::debug!("cannot send reply {id}: {e}"),
        Ok(()) => {}
    }
}
