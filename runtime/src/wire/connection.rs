//! One TCP connection between two peers: the handshake, buffered reading of messages, and a
//! writer task that batches outgoing frames.
//!
//! Both the calling side ([`crate::wire::client`]) and the serving side
//! ([`crate::wire::server`]) use it. It owns sockets and bytes, not calls: it never looks
//! inside a [`Call`](crate::wire::message::Call).
//! Writes go through one task per connection, so many tasks can send on the same connection
//! without a lock, and frames queued together leave in one `write` and one flush.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::wire::frame::{self, FrameError};
use crate::wire::message::{Hello, Message, MessageError};

/// Frames waiting for the writer task, per connection.
const WRITE_QUEUE: usize = 1024;
/// Read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;

/// Why a connection could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// The reading half of a connection, with its reuse buffer.
pub struct MessageReader {
    reader: BufReader<OwnedReadHalf>,
    buf: Vec<u8>,
    max_frame: usize,
}

impl MessageReader {
    /// Reads the next message; `Err(Frame(Closed))` when the other side closed cleanly.
    pub async fn next(&mut self) -> Result<Message, MessageError> {
        frame::read_frame(&mut self.reader, &mut self.buf, self.max_frame).await?;
        Message::decode(&self.buf)
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
fn spawn_writer(write_half: OwnedWriteHalf, max_frame: usize) -> FrameSender {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    tokio::spawn(async move {
        let mut writer = BufWriter::with_capacity(READ_BUFFER, write_half);
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

fn split(stream: TcpStream, max_frame: usize) -> (MessageReader, OwnedWriteHalf) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let reader = MessageReader {
        reader: BufReader::with_capacity(READ_BUFFER, read_half),
        buf: Vec::new(),
        max_frame,
    };
    (reader, write_half)
}

async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, ConnectionError>>,
) -> Result<T, ConnectionError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ConnectionError::TimedOut(limit))?
}

/// Connects to `address` and says hello; returns the reader, the sender and the other side's
/// hello. The whole exchange is bounded by `limit`.
pub async fn connect(
    address: &str,
    hello: &Hello,
    limit: Duration,
    max_frame: usize,
) -> Result<(MessageReader, FrameSender, Hello), ConnectionError> {
    within(limit, async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(ConnectionError::Connect)?;
        let (mut reader, mut write_half) = split(stream, max_frame);
        let framed = Message::Hello(hello.clone()).to_frame(max_frame)?;
        frame::write_all_frames(&mut write_half, &framed)
            .await
            .map_err(MessageError::from)?;
        let remote = match reader.next().await? {
            Message::Hello(remote) => remote,
            Message::Refused(reason) => return Err(ConnectionError::Refused(reason)),
            other => {
                return Err(ConnectionError::Handshake(format!(
                    "expected a hello, got {}",
                    describe(&other)
                )));
            }
        };
        remote
            .check_compatible()
            .map_err(ConnectionError::Handshake)?;
        let sender = spawn_writer(write_half, remote.send_limit(max_frame));
        Ok((reader, sender, remote))
    })
    .await
}

/// Serves the handshake of an accepted connection: reads the caller's hello, refuses an
/// incompatible one (telling it why), and answers with `hello`.
pub async fn accept(
    stream: TcpStream,
    hello: &Hello,
    limit: Duration,
    max_frame: usize,
) -> Result<(MessageReader, FrameSender, Hello), ConnectionError> {
    within(limit, async {
        let (mut reader, mut write_half) = split(stream, max_frame);
        let remote = match reader.next().await? {
            Message::Hello(remote) => remote,
            other => {
                return Err(ConnectionError::Handshake(format!(
                    "expected a hello, got {}",
                    describe(&other)
                )));
            }
        };
        if let Err(reason) = remote.check_compatible() {
            let framed = Message::Refused(reason.clone()).to_frame(max_frame)?;
            let _ = frame::write_all_frames(&mut write_half, &framed).await;
            return Err(ConnectionError::Handshake(reason));
        }
        let framed = Message::Hello(hello.clone()).to_frame(max_frame)?;
        frame::write_all_frames(&mut write_half, &framed)
            .await
            .map_err(MessageError::from)?;
        let sender = spawn_writer(write_half, remote.send_limit(max_frame));
        Ok((reader, sender, remote))
    })
    .await
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
