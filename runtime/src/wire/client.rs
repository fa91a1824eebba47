//! The calling side: a pool of persistent connections, one per remote peer, each carrying many
//! calls at once, matched to their replies by request id.
//!
//! Owns outgoing connections and the table of calls waiting for a reply. It turns every way a
//! call can fail (unreachable peer, timeout, connection lost, frame too large) into a
//! [`CallError`] naming the peer; it never decides what a function is or runs one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netrun_abi::peer_id;
use netrun_abi::{CallError, Contract, Outcome};
use tokio::sync::oneshot;

use crate::wire::connection::{self, ConnectionError, FrameSender, MessageReader};
use crate::wire::frame::FrameError;
use crate::wire::message::{Call, CallKind, ChainId, Encoding, Hello, Message, MessageError};

/// Longest time spent connecting and shaking hands, whatever the call's timeout.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

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
        Ok(Target {
            address: socket_address(&address.host, address.port),
            display: address.to_string(),
        })
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

type Pending = HashMap<u64, oneshot::Sender<Outcome>>;

/// The connection to one address, if any; its async lock is held only while connecting.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

/// One live connection and its calls in flight.
struct Link {
    sender: FrameSender,
    /// Calls waiting for a reply; `None` once the connection is gone.
    pending: Mutex<Option<Pending>>,
    next_id: AtomicU64,
}

impl Link {
    fn is_alive(&self) -> bool {
        !self.sender.is_closed() && self.pending.lock().expect("pending lock").is_some()
    }

    /// Registers a call; `None` if the connection is already gone.
    fn register(&self) -> Option<(u64, oneshot::Receiver<Outcome>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .as_mut()?
            .insert(id, tx);
        Some((id, rx))
    }

    fn forget(&self, id: u64) {
        if let Some(pending) = self.pending.lock().expect("pending lock").as_mut() {
            pending.remove(&id);
        }
    }
}

/// Reads replies until the connection ends, then fails every call still waiting.
async fn read_replies(link: Arc<Link>, mut reader: MessageReader, display: String) {
    let reason = loop {
        match reader.next().await {
            Ok(Message::Reply(reply)) => {
                let waiter = link
                    .pending
                    .lock()
                    .expect("pending lock")
                    .as_mut()
                    .and_then(|p| p.remove(&reply.id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(reply.outcome);
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
    let orphans = link
        .pending
        .lock()
        .expect("pending lock")
        .take()
        .unwrap_or_default();
    for (_, waiter) in orphans {
        let _ = waiter.send(Outcome::Error(CallError::PeerUnreachable {
            peer: display.clone(),
            reason: reason.clone(),
        }));
    }
}

/// Persistent, multiplexed connections to other peers, shared by everything that calls out.
pub struct Client {
    hello: Hello,
    max_frame: usize,
    /// One slot per address.
    links: Mutex<HashMap<String, Slot>>,
}

impl Client {
    /// A client that introduces itself with `hello`.
    pub fn new(hello: Hello, max_frame: usize) -> Client {
        Client {
            hello,
            max_frame,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `request.function` on `target`, waiting at most `timeout` for connection and reply.
    pub async fn call(&self, target: &Target, request: Request<'_>, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let function = request.function.to_string();
        match tokio::time::timeout(timeout, self.call_inner(target, request)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Error(CallError::Timeout {
                peer: target.display.clone(),
                function,
                after_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }

    async fn call_inner(&self, target: &Target, request: Request<'_>) -> Outcome {
        let link = match self.link(target).await {
            Ok(link) => link,
            Err(e) => return Outcome::Error(e),
        };
        let Some((id, reply)) = link.register() else {
            return unreachable_now(target, "the connection closed");
        };
        let call = Message::Call(Call {
            id,
            chain: request.chain,
            kind: request.kind,
            function: request.function.to_string(),
            encoding: request.encoding,
            args: request.args,
            contract: request.contract,
        });
        // Dropped (timeout) or finished: either way the table must not keep the entry.
        let _forget = ForgetOnDrop { link: &link, id };
        match link.sender.send(&call).await {
            Ok(()) => {}
            Err(MessageError::Frame(FrameError::TooLarge { size, max })) => {
                return Outcome::Error(CallError::FrameTooLarge {
                    size: size as u64,
                    max: max as u64,
                });
            }
            Err(e) => return unreachable_now(target, &e.to_string()),
        }
        reply
            .await
            .unwrap_or_else(|_| unreachable_now(target, "the connection closed"))
    }

    /// The live connection to `target`, connecting if there is none.
    async fn link(&self, target: &Target) -> Result<Arc<Link>, CallError> {
        let slot = {
            let mut links = self.links.lock().expect("links lock");
            links.entry(target.address.clone()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_alive()) {
            return Ok(link.clone());
        }
        let (reader, sender, _remote) =
            connection::connect(&target.address, &self.hello, CONNECT_LIMIT, self.max_frame)
                .await
                .map_err(|e| connect_error(target, e))?;
        let link = Arc::new(Link {
            sender,
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(read_replies(link.clone(), reader, target.display.clone()));
        *slot = Some(link.clone());
        Ok(link)
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
}
