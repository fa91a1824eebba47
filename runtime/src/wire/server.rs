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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use netrun_abi::{CallError, Outcome};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::wire::appnet;
use crate::wire::connection::{self, ConnectionError, MessageReader};
use crate::wire::frame::FrameError;
use crate::wire::message::{Call, Hello, Message, MessageError, Reply};
use crate::wire::secure::ClusterKey;
use crate::wire::spin::{self, RecentWaits};
use crate::wire::writer::FrameSender;

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
/// sockets and ids; what a call runs is the dispatcher's business. The future a call gets is
/// polled in its connection's task, with the connection's other calls: it waits for the work
/// (a worker runs the guest), it does not do long work itself.
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
///
/// The calls run in this task, polled alongside the reading, not in a task each: a call then
/// costs no task to make, move into and wake, and the idle limit needs no timer per call.
/// Once the last call running has ended, the next is polled for awake for a moment before the
/// thread sleeps, while this connection's calls have lately come that soon after the end of
/// the ones before ([`spin`]): a caller making one call after another.
async fn serve_calls<D: Dispatch>(
    mut reader: MessageReader,
    sender: FrameSender,
    remote: Hello,
    router: Arc<D>,
    admission: &Admission,
) -> Result<(), String> {
    let caller: Option<Arc<str>> = remote.peer_id.map(Arc::from);
    let (router, sender, caller) = (&*router, &sender, caller.as_deref());
    let most = admission.limits.calls_per_connection.max(1);
    let idle = admission.limits.idle;
    // Calls dispatched and not yet answered: the reply to the last one goes out alone.
    let in_flight = &AtomicUsize::new(0);
    let mut running = FuturesUnordered::new();
    // When the last call in flight ended (or the connection opened): the idle time runs from
    // there. One timer, moved on only when it goes off.
    let mut quiet_since = Instant::now();
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    // How long after the end of the last call the next came, lately; whether to poll for the
    // next call awake now, before sleeping.
    let mut gaps = RecentWaits::slow();
    let mut poll_first = false;
    // Calls read since the reader last emptied its buffer, and whether the last read of the
    // socket brought one call alone (a caller making one call after another): only then does
    // polling awake look at the socket itself (`crate::wire::stream`). A client's batches of
    // calls are left to epoll, which lets them come whole rather than one call at a time.
    let (mut read_together, mut look) = (0usize, true);
    loop {
        // All slots taken: the connection is not read until a call ends.
        while running.len() >= most {
            running.next().await;
        }
        let next = {
            let read = reader.next();
            tokio::pin!(read);
            loop {
                if std::mem::take(&mut poll_first)
                    && let Some(next) =
                        spin::poll_awake_looking(read.as_mut(), gaps.spin(), look).await
                {
                    break next;
                }
                tokio::select! {
                    biased;
                    Some(()) = running.next() => {
                        if running.is_empty() {
                            quiet_since = Instant::now();
                            poll_first = true;
                        }
                    }
                    next = &mut read => break next,
                    () = &mut idle_timer => {
                        if running.is_empty() && quiet_since.elapsed() >= idle {
                            return Err(format!("idle for {idle:?}"));
                        }
                        let from = if running.is_empty() { quiet_since } else { Instant::now() };
                        idle_timer.as_mut().reset((from + idle).into());
                    }
                }
            }
        };
        if running.is_empty() {
            gaps.record(quiet_since.elapsed());
        }
        match next {
            Ok(Message::Call(call)) => {
                in_flight.fetch_add(1, Ordering::Relaxed);
                // Calls that came in one read (a client's batch) are answered together: the
                // reply to one answered at once (a built-in) is not alone when the next call
                // was read with it, so the replies leave in one write, not a `send` each.
                let more_read = reader.has_more_read();
                read_together += 1;
                if !more_read {
                    look = read_together == 1;
                    read_together = 0;
                }
                running.push(async move {
                    let id = call.id;
                    let outcome = router.dispatch(call, caller).await;
                    let last = in_flight.fetch_sub(1, Ordering::Relaxed) == 1;
                    send_reply(sender, id, outcome, last && !more_read).await;
                });
            }
            Ok(other) => {
                return Err(format!(
                    "protocol error: {} where a call was expected",
                    connection::describe(&other)
                ));
            }
            Err(MessageError::Frame(FrameError::Closed)) => {
                // The client sent all it will: the calls it made still get their replies.
                while running.next().await.is_some() {}
                return Ok(());
            }
            Err(MessageError::Frame(e @ FrameError::TooLarge { .. })) => {
                tracing::warn!("closing a connection: {e}");
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Sends the reply to call `id`, `alone` when no other call of the connection is running
/// ([`FrameSender::send_alone_if`]); one too large for a frame becomes a `FrameTooLarge` error
/// reply instead.
async fn send_reply(sender: &FrameSender, id: u64, outcome: Outcome, alone: bool) {
    let reply = Message::Reply(Reply { id, outcome });
    match sender.send_alone_if(reply, alone).await {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::wire::connection::pipe;
    use crate::wire::message::{CallKind, Encoding};
    use crate::wire::stream::Stream;

    /// Runs each call for as many milliseconds as its arguments' first byte says, and answers
    /// its arguments; counts the calls running at once.
    #[derive(Default)]
    struct Sleeper {
        running: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    impl Dispatch for Sleeper {
        async fn dispatch(&self, call: Call, _caller: Option<&str>) -> Outcome {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now, Ordering::SeqCst);
            let ms = u64::from(call.args[0]);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            Outcome::Value(call.args)
        }

        async fn appnet(&self, _: appnet::Request, _: SocketAddr) -> appnet::Reply {
            unreachable!("no app-net requests here")
        }
    }

    fn call(id: u64, ms: u8) -> Message {
        Message::Call(Call {
            id,
            chain: None,
            kind: CallKind::Function,
            function: "f".into(),
            encoding: Encoding::Bincode,
            args: vec![ms, id as u8],
            contract: None,
            time_left_ms: None,
        })
    }

    /// A connection served by `serve_calls` under `limits`: what the client sends calls
    /// with, what it reads replies from, and the serving task.
    fn serve(
        limits: ConnectionLimits,
        dispatch: Arc<Sleeper>,
    ) -> (
        FrameSender,
        MessageReader,
        tokio::task::JoinHandle<Result<(), String>>,
    ) {
        serve_counting_writes(limits, dispatch, Arc::default())
    }

    /// As [`serve`], counting the writes of the serving side's replies in `writes`.
    fn serve_counting_writes(
        limits: ConnectionLimits,
        dispatch: Arc<Sleeper>,
        writes: Arc<AtomicUsize>,
    ) -> (
        FrameSender,
        MessageReader,
        tokio::task::JoinHandle<Result<(), String>>,
    ) {
        let (calls, call_reader) = pipe(1 << 20, 1 << 20);
        let (near, far) = tokio::io::duplex(1 << 20);
        let counted = Box::new(CountedWrites {
            inner: near.into_halves().1,
            writes,
        });
        let reply_sender = crate::wire::writer::spawn_writer(counted, 1 << 20);
        let replies = MessageReader::new(far.into_halves().0, 1 << 20);
        let admission = Admission {
            limits,
            max_frame: 1 << 20,
            key: None,
            same_module: None,
            appnet: false,
        };
        let serving = tokio::spawn(async move {
            let hello = Hello::client(1 << 20);
            serve_calls(call_reader, reply_sender, hello, dispatch, &admission).await
        });
        (calls, replies, serving)
    }

    /// A writer that counts the writes that reach it.
    struct CountedWrites {
        inner: crate::wire::stream::ByteWriter,
        writes: Arc<AtomicUsize>,
    }

    impl tokio::io::AsyncWrite for CountedWrites {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// The ids of the next `count` replies, in the order they come.
    async fn replied_ids(replies: &mut MessageReader, count: usize) -> Vec<u64> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let next = tokio::time::timeout(Duration::from_secs(10), replies.next()).await;
            ids.push(replied_id(next.expect("a reply").unwrap()));
        }
        ids
    }

    fn replied_id(message: Message) -> u64 {
        match message {
            Message::Reply(reply) => reply.id,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_not_while_a_call_runs() {
        let idle = Duration::from_millis(150);
        let limits = ConnectionLimits {
            idle,
            ..ConnectionLimits::default()
        };
        let (calls, mut replies, serving) = serve(limits, Arc::default());
        // The call runs for longer than the idle time: the connection stays for its reply.
        calls.send(call(1, 250)).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), replies.next()).await;
        assert_eq!(replied_id(first.unwrap().unwrap()), 1);
        let replied = Instant::now();
        // Then nothing: it is closed, and not before the idle time has passed since the reply.
        let ended = tokio::time::timeout(Duration::from_secs(10), serving).await;
        let ended = ended
            .expect("the idle connection was never closed")
            .unwrap();
        assert_eq!(ended, Err(format!("idle for {idle:?}")));
        assert!(
            replied.elapsed() >= idle,
            "closed {:?} after the reply",
            replied.elapsed()
        );
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_wait_unread_and_every_call_is_answered() {
        let limits = ConnectionLimits {
            calls_per_connection: 2,
            ..ConnectionLimits::default()
        };
        let dispatch = Arc::new(Sleeper::default());
        let (calls, mut replies, serving) = serve(limits, dispatch.clone());
        for id in 1..=6 {
            calls.send(call(id, 30)).await.unwrap();
        }
        let mut answered = replied_ids(&mut replies, 6).await;
        answered.sort();
        assert_eq!(answered, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(dispatch.most_at_once.load(Ordering::SeqCst), 2);
        drop(calls);
        let ended = tokio::time::timeout(Duration::from_secs(10), serving).await;
        assert_eq!(ended.expect("the connection ended").unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_client_that_has_sent_all_it_will_still_gets_every_reply() {
        let (calls, mut replies, serving) = serve(ConnectionLimits::default(), Arc::default());
        for id in 1..=3 {
            calls.send(call(id, 20 * id as u8)).await.unwrap();
        }
        // The client's side closes: the serving side reads the end before any call is done.
        drop(calls);
        let mut answered = Vec::new();
        while let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_secs(10), replies.next()).await
        {
            answered.push(replied_id(message));
        }
        assert_eq!(answered, vec![1, 2, 3]);
        assert_eq!(serving.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn calls_that_came_together_and_are_answered_at_once_are_answered_in_one_write() {
        let writes = Arc::new(AtomicUsize::new(0));
        let (calls, mut replies, _serving) =
            serve_counting_writes(ConnectionLimits::default(), Arc::default(), writes.clone());
        // Queued together, the eight calls leave in one write and are read in one read.
        for id in 1..=8 {
            calls.send(call(id, 0)).await.unwrap();
        }
        let answered = replied_ids(&mut replies, 8).await;
        assert_eq!(answered, (1..=8).collect::<Vec<_>>());
        // Each answered as soon as it was read: the replies still leave together, not in a
        // `send` each.
        let writes = writes.load(Ordering::SeqCst);
        assert!(writes <= 2, "8 replies took {writes} writes");
    }
}
