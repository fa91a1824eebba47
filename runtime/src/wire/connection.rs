//! One TCP connection between two peers: the handshake, buffered reading of messages, and a
//! writer task that batches outgoing frames.
//!
//! Both the calling side ([`crate::wire::client`]) and the serving side
//! ([`crate::wire::server`]) use it. It owns sockets and bytes, not calls: it never looks
//! inside a [`Call`](crate::wire::message::Call).
//! Writes go through one task per connection, so many tasks can send on the same connection
//! without a lock, and frames queued together leave in one `write` and one flush.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::wire::frame::{self, FrameError};
use crate::wire::message::{Hello, Message, MessageError};
use crate::wire::secure::{self, ClusterKey, Initiated, Opener, SECURE_MAGIC, Sealer, SecureError};

/// Frames waiting for the writer task, per connection: with the server's calls in flight per
/// connection, this bounds what a client that never reads its replies makes a peer hold.
const WRITE_QUEUE: usize = 256;
/// Read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;
/// The largest frame buffer a connection keeps between frames.
const KEPT_FRAME_BUFFER: usize = 1024 * 1024;

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

/// The reading half of a connection, with its reuse buffer.
pub struct MessageReader {
    reader: BufReader<ByteReader>,
    buf: Vec<u8>,
    max_frame: usize,
}

impl MessageReader {
    fn new(reader: ByteReader, max_frame: usize) -> MessageReader {
        MessageReader {
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            buf: Vec::new(),
            max_frame,
        }
    }

    /// Reads the next message; `Err(Frame(Closed))` when the other side closed cleanly.
    pub async fn next(&mut self) -> Result<Message, MessageError> {
        frame::read_frame(&mut self.reader, &mut self.buf, self.max_frame).await?;
        let message = Message::decode(&self.buf);
        // The message owns copies of its bytes: a buffer grown for one large frame is not
        // kept for the rest of the connection's life.
        if self.buf.capacity() > KEPT_FRAME_BUFFER {
            self.buf = Vec::new();
        }
        message
    }
}

/// Queues frames for a connection's writer task. Cheap to clone.
#[derive(Clone)]
pub struct FrameSender {
    tx: mpsc::Sender<Vec<u8>>,
    max_frame: usize,
}

impl FrameSender {
    /// Encodes and queues `message`. A message over the frame limit is refused here, before it
    /// reaches the wire; a closed connection is `Closed`.
    pub async fn send(&self, message: &Message) -> Result<(), MessageError> {
        let framed = message.to_frame(self.max_frame)?;
        self.tx.send(framed).await.map_err(|_| FrameError::Closed)?;
        Ok(())
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
/// flushes only when the queue is empty, so frames sent together leave together.
fn spawn_writer(writer: ByteWriter, max_frame: usize) -> FrameSender {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    tokio::spawn(async move {
        let mut writer = BufWriter::with_capacity(READ_BUFFER, writer);
        while let Some(framed) = rx.recv().await {
            if writer.write_all(&framed).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if writer.write_all(&more).await.is_err() {
                    return;
                }
            }
            if writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    FrameSender { tx, max_frame }
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
        let (reader, mut writer) = halves(stream, secured);
        let mut reader = MessageReader::new(reader, max_frame);
        write_message(&mut writer, &Message::Hello(hello.clone()), max_frame).await?;
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
