//! One TCP connection between two peers: the handshake and buffered reading of messages; its
//! writing half is [`crate::wire::writer`]'s.
//!
//! Both the calling side ([`crate::wire::client`]) and the serving side
//! ([`crate::wire::server`]) use it. It owns sockets and bytes, not calls: it never looks
//! inside a [`Call`](crate::wire::message::Call).

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use snow::StatelessTransportState;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::wire::appnet;
use crate::wire::frame::{self, FrameError, FrameKind};
use crate::wire::message::{Head, Hello, Message, MessageError};
use crate::wire::secure::{self, ClusterKey, Initiated, Opener, SECURE_MAGIC, Sealer, SecureError};
use crate::wire::stream::{ByteReader, ByteWriter, Stream};
use crate::wire::writer::{FrameSender, spawn_writer};

/// Read buffer per connection.
const READ_BUFFER: usize = 64 * 1024;
/// The largest frame buffer a connection keeps between frames.
const KEPT_FRAME_BUFFER: usize = 1024 * 1024;
/// How much of a message in pieces the reader reads, piece after piece, before it lets the
/// other tasks of its thread run: about a millisecond of copying here, so that a message of
/// tens of MiB does not hold a one-worker peer's only thread for the whole of it.
pub(crate) const READ_BEFORE_YIELD: usize = 4 * 1024 * 1024;

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
    /// Bytes of pieces read since the reader last yielded ([`READ_BEFORE_YIELD`]).
    unyielded: usize,
}

/// A message sent in pieces, read as far as its pieces came: the message and its payload's
/// length from the first, and its payload, read straight into a buffer of that length.
struct Partial {
    head: Head,
    payload: Vec<u8>,
}

impl MessageReader {
    pub(crate) fn new(reader: ByteReader, max_frame: usize) -> MessageReader {
        MessageReader {
            reader: BufReader::with_capacity(READ_BUFFER, reader),
            buf: Vec::new(),
            partial: None,
            unyielded: 0,
            max_frame,
        }
    }

    /// True when bytes after the last message read are in already: the start of the next
    /// message, which `next` returns without waiting on the network if it is whole.
    pub fn has_more_read(&self) -> bool {
        !self.reader.buffer().is_empty()
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
                // Straight on to what came next, without yielding after each piece: a small
                // frame sent between them is read as soon as the pieces before it are, not
                // after those the other side wrote while this task waited for its turn
                // (docs/performance.md). Only every few MiB does the thread's other tasks'
                // turn come (the writer yields after each piece it sends).
                self.unyielded += header.size;
                if self.unyielded >= READ_BEFORE_YIELD {
                    self.unyielded = 0;
                    tokio::task::yield_now().await;
                }
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

/// A reply of `size` bytes, each the id's low byte: a message for the tests of what runs over
/// a connection.
#[cfg(test)]
pub(crate) fn reply(id: u64, size: usize) -> Message {
    Message::Reply(crate::wire::message::Reply {
        id,
        outcome: netrun_abi::Outcome::Value(vec![id as u8; size]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::HEADER_LEN;

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
