//! One TCP connection between two peers: the handshake, buffered reading of messages, and a
//! writer task that batches outgoing frames.
//!
//! Both the calling side ([`crate::wire::client`]) and the serving side
//! ([`crate::wire::server`]) use it. It owns sockets and bytes, not calls: it never looks
//! inside a [`Call`](crate::wire::message::Call).
//! Writes go through one task per connection, so many tasks can send on the same connection
//! without waiting for each other, and frames queued together leave in one `write` and one
//! flush; that task also sends large messages in pieces, with the other frames between them.
//! A lone small frame (a call or reply with no other on its way: `FrameSender::send_alone_if`)
//! is written by its sender when the writer task has nothing queued, which saves the
//! hand-off to that task. The buffered writer they share is behind a lock that a sender only
//! tries (it never waits for it, nor for room in the socket: the writer task finishes a
//! flush the socket could not take at once).

use std::collections::VecDeque;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::wire::appnet;
use crate::wire::frame::{self, FrameError, FrameKind, HEADER_LEN};
use crate::wire::message::{Framed, Head, Hello, Message, MessageError};
use crate::wire::secure::{self, ClusterKey, Initiated, Opener, SECURE_MAGIC, Sealer, SecureError};

/// Frames waiting for the writer task, per connection: with the server's calls in flight per
/// connection, this bounds what a client that never reads its replies makes a peer hold.
const WRITE_QUEUE: usize = 256;
/// Read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;
/// The largest frame buffer a connection keeps between frames.
const KEPT_FRAME_BUFFER: usize = 1024 * 1024;
/// A message larger than this goes out in pieces of this size, so that a small frame queued
/// behind it waits for one piece to be written, not for the whole message.
pub const PIECE_SIZE: usize = 128 * 1024;

/// The reading half of a connection: plaintext, or opened from records.
pub type ByteReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection: plaintext, or sealed into records.
pub type ByteWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A byte stream a connection runs over: TCP between peers; an in-memory pipe where the
/// handshake is driven by a test or a fuzzer.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The stream as two owned halves, one per direction.
    fn into_halves(self) -> (ByteReader, ByteWriter);
}

impl Stream for TcpStream {
    fn into_halves(self) -> (ByteReader, ByteWriter) {
        let (read, write) = self.into_split();
        (Box::new(read), Box::new(write))
    }
}

impl Stream for tokio::io::DuplexStream {
    fn into_halves(self) -> (ByteReader, ByteWriter) {
        let (read, write) = tokio::io::split(self);
        (Box::new(read), Box::new(write))
    }
}

/// The halves of `stream`, sealed and opened with `transport` when the link is secured.
fn halves<S: Stream>(
    stream: S,
    transport: Option<Arc<StatelessTransportState>>,
) -> (ByteReader, ByteWriter) {
    let (read, write) = stream.into_halves();
    match transport {
        Some(transport) => (
            Box::new(Opener::new(read, transport.clone())),
            Box::new(Sealer::new(write, transport)),
        ),
        None => (read, write),
    }
}

/// Why a connection could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("it answered in app-net's format: it is an app-net (Python) peer")]
    AppNet,
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl From<SecureError> for ConnectionError {
    fn from(e: SecureError) -> Self {
        match e {
            SecureError::Authentication(why) => ConnectionError::Authentication(why),
            SecureError::Io(io) => ConnectionError::Message(MessageError::Frame(io.into())),
        }
    }
}

/// The reading half of a connection, with its reuse buffer and the message whose pieces are
/// coming in.
pub struct MessageReader {
    reader: BufReader<ByteReader>,
    buf: Vec<u8>,
    partial: Option<Partial>,
    max_frame: usize,
}

/// A message sent in pieces, read as far as its pieces came: the message and its payload's
/// length from the first, and its payload, read straight into a buffer of that length.
struct Partial {
    head: Head,
    payload: Vec<u8>,
}

impl MessageReader {
    fn new(reader: ByteReader, max_frame: usize) -> MessageReader {
        MessageReader {
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            buf: Vec::new(),
            partial: None,
            max_frame,
        }
    }

    /// Reads the next message, whole or put together from its pieces (the frames between
    /// them are returned as they come); `Err(Frame(Closed))` when the other side closed
    /// cleanly.
    pub async fn next(&mut self) -> Result<Message, MessageError> {
        loop {
            let header = match frame::read_header(&mut self.reader).await {
                // Closed between the pieces of a message: it never came whole.
                Err(FrameError::Closed) if self.partial.is_some() => {
                    return Err(FrameError::Truncated.into());
                }
                header => header?,
            };
            let last = match header.kind {
                FrameKind::Whole => {
                    self.buf.clear();
                    frame::read_payload(
                        &mut self.reader,
                        header.size,
                        &mut self.buf,
                        self.max_frame,
                    )
                    .await?;
                    let message = Message::decode(&self.buf);
                    let_go_if_grown(&mut self.buf);
                    return message;
                }
                FrameKind::Piece { last } => last,
            };
            match &mut self.partial {
                None => self.partial = Some(self.first_piece(header.size).await?),
                Some(partial) => {
                    // The pieces may not add up to more than the first one said (which is
                    // within the frame limit).
                    let said = partial.head.payload_len;
                    let read = frame::read_payload(
                        &mut self.reader,
                        header.size,
                        &mut partial.payload,
                        said,
                    )
                    .await;
                    if let Err(FrameError::TooLarge { size: found, .. }) = read {
                        return Err(MessageError::PayloadLength { said, found });
                    }
                    read?;
                }
            }
            if !last {
                // Between two pieces of a large message, the tasks that wait (a guest, a
                // writer, the frames that came between the pieces) get their turn: the
                // pieces of 8 MiB would otherwise hold this thread for milliseconds.
                tokio::task::yield_now().await;
                continue;
            }
            let Partial { head, payload } = self.partial.take().expect("a message in pieces");
            return head.finish(payload);
        }
    }

    /// Reads the first piece of a message sent in pieces: it holds the message and its
    /// payload's length (the sender puts them there), then the payload's first bytes. The
    /// payload's buffer is sized once, to the length said, within the frame limit; its
    /// pages are only touched as the bytes arrive.
    async fn first_piece(&mut self, size: usize) -> Result<Partial, MessageError> {
        self.buf.clear();
        frame::read_payload(&mut self.reader, size, &mut self.buf, self.max_frame).await?;
        let head = Message::decode_head(&self.buf)?;
        let (payload_len, payload_at) = (head.payload_len, head.payload_at);
        let total = payload_at.saturating_add(payload_len);
        if total > self.max_frame {
            return Err(FrameError::TooLarge {
                size: total,
                max: self.max_frame,
            }
            .into());
        }
        let first = &self.buf[payload_at..];
        if first.len() > payload_len {
            return Err(MessageError::PayloadLength {
                said: payload_len,
                found: first.len(),
            });
        }
        let mut payload = Vec::with_capacity(payload_len);
        payload.extend_from_slice(first);
        let_go_if_grown(&mut self.buf);
        Ok(Partial { head, payload })
    }
}

/// Lets go of the reuse buffer once it has grown for one large frame (what was decoded from it
/// owns copies of its bytes), rather than keeping it for the rest of the connection's life.
fn let_go_if_grown(buf: &mut Vec<u8>) {
    if buf.capacity() > KEPT_FRAME_BUFFER {
        *buf = Vec::new();
    }
}

/// Queues frames for a connection's writer task, which batches them; writes a lone small one
/// itself when the writer has nothing queued before it (saving the hand-off to the writer
/// task: about a tenth of a 16-byte call's round trip). Cheap to clone.
#[derive(Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<Outgoing>,
    max_frame: usize,
    out: Arc<Outbox>,
}

/// What the writer task is given: a frame, or the word to finish a flush a sender began.
enum Outgoing {
    Frame(Framed),
    Flush,
}

/// The writing half of a connection, shared by the writer task and senders writing through.
struct Outbox {
    writer: tokio::sync::Mutex<Writing>,
    /// Frames given to the writer task and not yet written by it: a sender writes through
    /// only when there are none, so frames leave in the order they were sent.
    queued: AtomicUsize,
}

/// The connection's buffered writer, and the large messages going out in pieces.
struct Writing {
    buf: BufWriter<ByteWriter>,
    large: VecDeque<Pieces>,
}

/// The largest frame a sender writes itself.
const WRITE_THROUGH: usize = 16 * 1024;

impl FrameSender {
    /// Encodes `message` and queues it for the writer task, which writes the frames queued
    /// together in one go (its payload goes out as it is, not copied). A message over the
    /// frame limit is refused here, before it reaches the wire; a closed connection is
    /// `Closed`.
    pub async fn send(&self, message: Message) -> Result<(), MessageError> {
        let framed = message.into_framed(self.max_frame)?;
        self.queue(framed).await
    }

    /// As [`FrameSender::send`], but when `alone` (the message is the only one its sender
    /// has to send now: a lone call, the reply to the only call running) it is written and
    /// flushed here if it is small and the writer has nothing queued. Messages sent while
    /// others are on their way are queued, so that they leave together.
    pub async fn send_alone_if(&self, message: Message, alone: bool) -> Result<(), MessageError> {
        let framed = message.into_framed(self.max_frame)?;
        if !alone {
            return self.queue(framed).await;
        }
        match self.write_through(framed) {
            Ok(written) => written,
            Err(framed) => self.queue(framed).await,
        }
    }

    /// Gives `framed` to the writer task.
    async fn queue(&self, framed: Framed) -> Result<(), MessageError> {
        self.out.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Outgoing::Frame(framed)).await.is_err() {
            self.out.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(FrameError::Closed.into());
        }
        Ok(())
    }

    /// Writes a small frame into the connection's buffer and flushes it, here, when the
    /// writer is free and has nothing queued; gives the frame back otherwise.
    fn write_through(&self, framed: Framed) -> Result<Result<(), MessageError>, Framed> {
        if framed.len() > WRITE_THROUGH || self.tx.is_closed() {
            return Err(framed);
        }
        let Ok(mut writing) = self.out.writer.try_lock() else {
            return Err(framed);
        };
        if self.out.queued.load(Ordering::Acquire) != 0
            || writing.buf.buffer().len() + framed.len() > READ_BUFFER
        {
            return Err(framed);
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for part in [&framed.head, &framed.body] {
            // It fits the buffer, so it is copied into it whole, with no I/O.
            match Pin::new(&mut writing.buf).poll_write(&mut cx, part) {
                Poll::Ready(Ok(n)) if n == part.len() => {}
                _ => return Ok(Err(FrameError::Closed.into())),
            }
        }
        match Pin::new(&mut writing.buf).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(Ok(())),
            Poll::Ready(Err(e)) => Ok(Err(FrameError::from(e).into())),
            // The socket is full: the writer task finishes the flush.
            Poll::Pending => {
                let _ = self.tx.try_send(Outgoing::Flush);
                Ok(Ok(()))
            }
        }
    }

    /// True once the writer task has stopped (the connection is gone).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// The frame limit this connection enforces.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

/// Starts the writer task of a connection. It drains the queue into a buffered writer and
/// flushes only when the queue is empty, so frames sent together leave together. A message
/// larger than [`PIECE_SIZE`] goes out in pieces, one piece per turn, with whatever else
/// was queued meanwhile going out between them; after each piece the task yields, so the
/// tasks that queue those frames get to run.
fn spawn_writer(writer: ByteWriter, max_frame: usize) -> FrameSender {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(WRITE_QUEUE);
    let out = Arc::new(Outbox {
        writer: tokio::sync::Mutex::new(Writing {
            buf: BufWriter::with_capacity(READ_BUFFER, writer),
            large: VecDeque::new(),
        }),
        queued: AtomicUsize::new(0),
    });
    let shared = out.clone();
    tokio::spawn(async move {
        let mut idle = true;
        loop {
            let first = if idle {
                let Some(first) = rx.recv().await else {
                    break;
                };
                Some(first)
            } else {
                None
            };
            let mut writing = shared.writer.lock().await;
            let Writing { buf, large } = &mut *writing;
            let mut take = |outgoing: Outgoing| match outgoing {
                Outgoing::Frame(framed) => Some(framed),
                Outgoing::Flush => None,
            };
            if let Some(framed) = first.and_then(&mut take) {
                shared.queued.fetch_sub(1, Ordering::AcqRel);
                if queue_or_write(buf, large, framed).await.is_err() {
                    return;
                }
            }
            while let Ok(more) = rx.try_recv() {
                if let Some(framed) = take(more) {
                    shared.queued.fetch_sub(1, Ordering::AcqRel);
                    if queue_or_write(buf, large, framed).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(pieces) = large.front_mut() {
                if pieces.write_next(buf).await.is_err() {
                    return;
                }
                if pieces.is_done() {
                    large.pop_front();
                }
            }
            if buf.flush().await.is_err() {
                return;
            }
            idle = large.is_empty();
            drop(writing);
            if !idle {
                // Between two pieces, other tasks of this thread get their turn, among them
                // those that queue frames to go out between the pieces.
                tokio::task::yield_now().await;
            }
        }
        let _ = shared.writer.lock().await.buf.shutdown().await;
    });
    FrameSender { tx, max_frame, out }
}

/// Writes a small frame; puts a large one in the queue of messages that go out in pieces.
async fn queue_or_write(
    writer: &mut BufWriter<ByteWriter>,
    large: &mut VecDeque<Pieces>,
    framed: Framed,
) -> std::io::Result<()> {
    if framed.len() > HEADER_LEN + PIECE_SIZE {
        large.push_back(Pieces {
            framed,
            at: HEADER_LEN,
        });
        return Ok(());
    }
    writer.write_all(&framed.head).await?;
    writer.write_all(&framed.body).await
}

/// A framed message going out in pieces: its bytes from `at` on (counted over its head, then
/// its body) are still to be sent.
struct Pieces {
    framed: Framed,
    at: usize,
}

impl Pieces {
    /// Writes the next piece, with its own header. The first piece holds at least the whole
    /// head (the message and its payload's length), however long, so that the reader learns
    /// the payload's length from it.
    async fn write_next(&mut self, writer: &mut BufWriter<ByteWriter>) -> std::io::Result<()> {
        let head_len = self.framed.head.len();
        let mut end = (self.at + PIECE_SIZE).min(self.framed.len());
        if self.at == HEADER_LEN {
            end = end.max(head_len);
        }
        let last = end == self.framed.len();
        writer
            .write_all(&frame::Header::piece(end - self.at, last))
            .await?;
        if self.at < head_len {
            writer
                .write_all(&self.framed.head[self.at..end.min(head_len)])
                .await?;
        }
        if end > head_len {
            let from = self.at.max(head_len) - head_len;
            writer
                .write_all(&self.framed.body[from..end - head_len])
                .await?;
        }
        self.at = end;
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.at == self.framed.len()
    }
}

async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ConnectionError::TimedOut(limit))?
}

/// Writes one message as a frame and flushes.
async fn write_message(
    writer: &mut ByteWriter,
    message: &Message,
    max_frame: usize,
) -> Result<(), ConnectionError> {
    let framed = message.to_frame(max_frame)?;
    frame::write_all_frames(writer, &framed)
        .await
        .map_err(MessageError::from)?;
    Ok(())
}

/// Connects to `address` and says hello (with `key`, over a secured channel); returns the
/// reader, the sender and the other side's hello. The whole exchange is bounded by `limit`.
pub async fn connect(
    address: &str,
    hello: &Hello,
    limit: Duration,
    max_frame: usize,
    key: Option<&ClusterKey>,
) -> Result<(MessageReader, FrameSender, Hello), ConnectionError> {
    within(limit, async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(ConnectionError::Connect)?;
        let _ = stream.set_nodelay(true);
        let secured = match key {
            Some(key) => match secure::initiate(&mut stream, key).await? {
                Initiated::Secured(transport) => Some(transport),
                // It answered in plaintext: it has no secret, and says why it refuses.
                Initiated::Plaintext(header) => {
                    return Err(plaintext_refusal(stream, header).await);
                }
            },
            None => None,
        };
        let plaintext = secured.is_none();
        if plaintext {
            // The hello, then a look at the answer's first byte: app-net answers in JSON.
            let framed = Message::Hello(hello.clone()).to_frame(max_frame)?;
            stream
                .write_all(&framed)
                .await
                .map_err(|e| MessageError::Frame(e.into()))?;
            let mut first = [0u8; 1];
            if matches!(stream.peek(&mut first).await, Ok(1)) && appnet::is_appnet(first[0]) {
                return Err(ConnectionError::AppNet);
            }
        }
        let (reader, mut writer) = halves(stream, secured);
        let mut reader = MessageReader::new(reader, max_frame);
        if !plaintext {
            write_message(&mut writer, &Message::Hello(hello.clone()), max_frame).await?;
        }
        let remote = match reader.next().await {
            Ok(Message::Hello(remote)) => remote,
            Ok(Message::Refused(reason)) => return Err(ConnectionError::Refused(reason)),
            Ok(other) => {
                return Err(ConnectionError::Handshake(format!(
                    "expected a hello, got {}",
                    describe(&other)
                )));
            }
            // A peer with a secret closes on a plaintext hello after saying why; one that
            // closes without a word is not a netrun peer.
            Err(e) => return Err(e.into()),
        };
        remote
            .check_compatible()
            .map_err(ConnectionError::Handshake)?;
        let sender = spawn_writer(writer, remote.send_limit(max_frame));
        Ok((reader, sender, remote))
    })
    .await
}

/// What a peer without a secret answered a secured hello with: its refusal, whose frame
/// starts with `header`, as an error.
async fn plaintext_refusal(mut stream: impl Stream, header: [u8; 4]) -> ConnectionError {
    /// A refusal is a sentence; a longer "frame" is something else.
    const LONGEST: usize = 4096;
    let len = u32::from_be_bytes(header) as usize;
    let mut payload = vec![0u8; len.min(LONGEST)];
    let read = tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut payload));
    match read.await {
        Ok(Ok(_)) if len <= LONGEST => match Message::decode(&payload) {
            Ok(Message::Refused(reason)) => ConnectionError::Authentication(
                reason
                    .strip_prefix("authentication failed: ")
                    .unwrap_or(&reason)
                    .to_string(),
            ),
            _ => not_secured(),
        },
        _ => not_secured(),
    }
}

fn not_secured() -> ConnectionError {
    ConnectionError::Authentication(
        "the peer did not answer the secured handshake: it has no cluster secret".into(),
    )
}

/// Serves the handshake of an accepted connection: secures it when it starts with the secured
/// magic and this side has `key` (refusing, with the reason in plaintext, when only one side
/// has a secret), reads the caller's hello, refuses an incompatible one, or one running
/// another module than `same_module` (telling it why), and answers with `hello`.
pub async fn accept(
    stream: impl Stream,
    hello: &Hello,
    limit: Duration,
    max_frame: usize,
    key: Option<&ClusterKey>,
    same_module: Option<&str>,
) -> Result<(MessageReader, FrameSender, Hello), ConnectionError> {
    within(limit, async {
        let mut stream = stream;
        let mut first = [0u8; 4];
        stream
            .read_exact(&mut first)
            .await
            .map_err(|e| MessageError::Frame(e.into()))?;
        let secured = match (first == SECURE_MAGIC, key) {
            (true, Some(key)) => Some(secure::respond(&mut stream, key).await?),
            (false, None) => None,
            (true, None) => {
                let why = "authentication failed: the caller has a cluster secret and this peer has none: give both the same secret, or neither";
                return Err(refuse_in_plaintext(stream, why, max_frame).await);
            }
            (false, Some(_)) => {
                let why = "authentication failed: this peer requires the cluster secret (--secret-file or NET_SECRET)";
                return Err(refuse_in_plaintext(stream, why, max_frame).await);
            }
        };
        let plaintext = secured.is_none();
        let (mut reader, mut writer) = halves(stream, secured);
        if plaintext {
            // The four bytes read are the start of the plaintext hello's frame.
            reader = Box::new(Cursor::new(first).chain(reader));
        }
        let mut reader = MessageReader::new(reader, max_frame);
        let remote = match reader.next().await? {
            Message::Hello(remote) => remote,
            other => {
                return Err(ConnectionError::Handshake(format!(
                    "expected a hello, got {}",
                    describe(&other)
                )));
            }
        };
        let refusal = remote.check_compatible().err().or_else(|| {
            let ours = same_module?;
            let theirs = &remote.module_hash;
            (!theirs.is_empty() && theirs != ours).then(|| {
                format!(
                    "this peer serves only peers running its own module (--require-same-module): it runs {}, the caller runs {}",
                    short_hash(ours),
                    short_hash(theirs)
                )
            })
        });
        if let Some(reason) = refusal {
            let _ = write_message(&mut writer, &Message::Refused(reason.clone()), max_frame).await;
            return Err(ConnectionError::Handshake(reason));
        }
        write_message(&mut writer, &Message::Hello(hello.clone()), max_frame).await?;
        let sender = spawn_writer(writer, remote.send_limit(max_frame));
        Ok((reader, sender, remote))
    })
    .await
}

/// The first 12 hex digits of a module hash, for messages.
fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Tells the caller in plaintext why it is refused, and closes; the error to log.
async fn refuse_in_plaintext(
    mut stream: impl Stream,
    why: &str,
    max_frame: usize,
) -> ConnectionError {
    if let Ok(framed) = Message::Refused(why.to_string()).to_frame(max_frame) {
        let _ = stream.write_all(&framed).await;
        let _ = stream.shutdown().await;
    }
    let why = why.strip_prefix("authentication failed: ").unwrap_or(why);
    ConnectionError::Authentication(why.to_string())
}

/// A message's kind, for error messages.
pub fn describe(message: &Message) -> &'static str {
    match message {
        Message::Hello(_) => "a hello",
        Message::Refused(_) => "a refusal",
        Message::Call(_) => "a call",
        Message::Reply(_) => "a reply",
    }
}

/// A writer task and a reader over an in-memory pipe of `capacity` bytes: what is sent comes
/// out of the reader. For the tests of what runs over a connection.
#[cfg(test)]
pub(crate) fn pipe(capacity: usize, max_frame: usize) -> (FrameSender, MessageReader) {
    let (near, far) = tokio::io::duplex(capacity);
    let (_, write) = near.into_halves();
    let (read, _) = far.into_halves();
    (
        spawn_writer(write, max_frame),
        MessageReader::new(read, max_frame),
    )
}

#[cfg(test)]
mod tests {
    use netrun_abi::Outcome;

    use super::*;
    use crate::wire::message::Reply;

    fn reply(id: u64, size: usize) -> Message {
        Message::Reply(Reply {
            id,
            outcome: Outcome::Value(vec![id as u8; size]),
        })
    }

    #[tokio::test]
    async fn small_messages_overtake_a_large_one_which_arrives_whole() {
        let (sender, mut reader) = pipe(64 * 1024, 64 << 20);
        let large = reply(1, 40 * PIECE_SIZE);
        sender.send(large.clone()).await.unwrap();
        let mut order = Vec::new();
        let small = (2..12).map(|id| reply(id, 16)).collect::<Vec<_>>();
        let read = async {
            while order.len() < 11 {
                order.push(reader.next().await.unwrap());
            }
        };
        let send = async {
            for message in &small {
                sender.send(message.clone()).await.unwrap();
            }
        };
        tokio::join!(read, send);
        // Everything arrived intact, and the small ones did not wait for all 40 pieces.
        let position = order
            .iter()
            .position(|m| *m == large)
            .expect("large arrived");
        assert!(position > 0, "no small message went out between the pieces");
        order.remove(position);
        assert_eq!(order, small);
    }

    #[tokio::test]
    async fn a_lone_message_does_not_overtake_one_queued_before_it() {
        let (sender, mut reader) = pipe(64 * 1024, 1 << 20);
        // The writer task has not run yet: the first is still queued when the second is sent.
        sender.send(reply(1, 16)).await.unwrap();
        sender.send_alone_if(reply(2, 16), true).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), reply(1, 16));
        assert_eq!(reader.next().await.unwrap(), reply(2, 16));
        // Nothing queued now: the next lone one is written by its sender, and comes next.
        tokio::task::yield_now().await;
        sender.send_alone_if(reply(3, 16), true).await.unwrap();
        sender.send(reply(4, 16)).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), reply(3, 16));
        assert_eq!(reader.next().await.unwrap(), reply(4, 16));
    }

    #[tokio::test]
    async fn a_lone_message_the_socket_cannot_take_at_once_arrives_whole() {
        // A pipe of 64 bytes: the sender's flush stops short, and the writer task finishes it.
        let (sender, mut reader) = pipe(64, 1 << 20);
        let message = reply(5, 8 * 1024);
        sender.send_alone_if(message.clone(), true).await.unwrap();
        sender.send_alone_if(reply(6, 16), true).await.unwrap();
        let both = async {
            assert_eq!(reader.next().await.unwrap(), message);
            assert_eq!(reader.next().await.unwrap(), reply(6, 16));
        };
        tokio::time::timeout(Duration::from_secs(10), both)
            .await
            .expect("the rest of the flush never went out");
    }

    /// Raw bytes written on one end, a reader with a frame limit of 100 on the other.
    fn raw_pipe() -> (ByteWriter, MessageReader) {
        let (near, far) = tokio::io::duplex(1 << 20);
        let (_, write) = near.into_halves();
        let (read, _) = far.into_halves();
        (write, MessageReader::new(read, 100))
    }

    /// The head of `message`'s frame without its header: the message, its payload's length.
    fn head_of(message: Message) -> Vec<u8> {
        let framed = message.into_framed(usize::MAX).unwrap();
        framed.head[HEADER_LEN..].to_vec()
    }

    /// The first piece of `reply(id, size)`: its head and the first `sent` bytes of its value.
    fn first_piece(id: u64, size: usize, sent: usize) -> Vec<u8> {
        let mut first = head_of(reply(id, size));
        first.extend_from_slice(&vec![id as u8; sent]);
        first
    }

    /// Writes a piece holding `bytes`.
    async fn piece(write: &mut ByteWriter, bytes: &[u8], last: bool) {
        let header = frame::Header::piece(bytes.len(), last);
        write.write_all(&header).await.unwrap();
        write.write_all(bytes).await.unwrap();
    }

    #[tokio::test]
    async fn a_message_saying_a_payload_past_the_limit_is_refused_at_its_first_piece() {
        let (mut write, mut reader) = raw_pipe();
        let head = head_of(reply(1, 120));
        piece(&mut write, &head, false).await;
        let refused = reader.next().await;
        let total = head.len() + 120;
        assert!(
            matches!(
                refused,
                Err(MessageError::Frame(FrameError::TooLarge { size, max: 100 })) if size == total
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn pieces_adding_up_past_the_payload_said_are_refused() {
        let (mut write, mut reader) = raw_pipe();
        piece(&mut write, &first_piece(1, 50, 30), false).await;
        piece(&mut write, &[1; 30], true).await;
        let refused = reader.next().await;
        assert!(
            matches!(
                refused,
                Err(MessageError::PayloadLength {
                    said: 50,
                    found: 60
                })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_payload_in_pieces_arrives_whole() {
        let (mut write, mut reader) = raw_pipe();
        piece(&mut write, &first_piece(9, 50, 20), false).await;
        piece(&mut write, &[9; 20], false).await;
        piece(&mut write, &[9; 10], true).await;
        assert_eq!(reader.next().await.unwrap(), reply(9, 50));
    }

    #[tokio::test]
    async fn a_close_between_pieces_is_a_truncation() {
        let (mut write, mut reader) = raw_pipe();
        piece(&mut write, &first_piece(1, 50, 4), false).await;
        write.shutdown().await.unwrap();
        drop(write);
        let read = reader.next().await;
        assert!(
            matches!(read, Err(MessageError::Frame(FrameError::Truncated))),
            "{read:?}"
        );
    }
}
