//! The writing half of a connection: a writer task that batches outgoing frames, and the
//! senders that give it frames.
//!
//! Writes go through one task per connection, so many tasks can send on the same connection
//! without waiting for each other, and frames queued together leave in one `write` and one
//! flush; that task also sends large messages in pieces, with the other frames between them.
//! A lone small frame (a call or reply with no other on its way: `FrameSender::send_alone_if`)
//! is written by its sender when the writer task has nothing queued, which saves the
//! hand-off to that task. The buffered writer they share is behind a lock that a sender only
//! tries (it never waits for it, nor for room in the socket: the writer task finishes a
//! flush the socket could not take at once).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::wire::frame::{self, FrameError, HEADER_LEN};
use crate::wire::message::{Framed, Message, MessageError};
use crate::wire::spin;
use crate::wire::stream::ByteWriter;

/// Frames waiting for the writer task, per connection: with the server's calls in flight per
/// connection, this bounds what a client that never reads its replies makes a peer hold.
const WRITE_QUEUE: usize = 256;
/// Write buffer per connection.
const WRITE_BUFFER: usize = 64 * 1024;
/// A message larger than this goes out in pieces, so that a small frame queued behind it
/// waits for one piece to be written, not for the whole message.
pub const PIECES_FROM: usize = 128 * 1024;
/// The largest piece: what the pieces of a message grow to while it has the connection to
/// itself (each piece is a `writev` of its own, so large ones move the bytes fastest).
pub const PIECE_SIZE: usize = 512 * 1024;
/// The first piece of a message, and every piece for [`CROWDED_TURNS`] turns of the writer
/// after a small frame went out between two: what a small frame sent meanwhile waits behind,
/// in the writer and in the reader's socket. Once no other frame goes out between them, each
/// piece is twice the one before, up to [`PIECE_SIZE`].
pub const SMALL_PIECE: usize = 32 * 1024;
/// How many pieces stay small after a small frame was written between them.
const CROWDED_TURNS: u32 = 8;

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

/// The connection's buffered writer, the large messages going out in pieces, and how many
/// more of their pieces are small ([`SMALL_PIECE`]) since the last small frame.
struct Writing {
    buf: BufWriter<ByteWriter>,
    large: VecDeque<Pieces>,
    crowded: u32,
}

impl Writing {
    /// A small frame was written: the pieces of a large message going out meanwhile are
    /// small for a while.
    fn wrote_small(&mut self) {
        if !self.large.is_empty() {
            self.crowded = CROWDED_TURNS;
        }
    }

    /// Writes a small frame; puts a large one in the queue of messages that go out in pieces.
    async fn queue_or_write(&mut self, framed: Framed) -> std::io::Result<()> {
        if framed.len() > HEADER_LEN + PIECES_FROM {
            self.large.push_back(Pieces::new(framed));
            return Ok(());
        }
        let mut parts = [IoSlice::new(&framed.head), IoSlice::new(&framed.body)];
        write_all_vectored(&mut self.buf, &mut parts).await?;
        self.wrote_small();
        Ok(())
    }

    /// Writes the next piece of the first large message, if any: [`SMALL_PIECE`] while
    /// crowded, else the message's next size ([`Pieces::grow`]). Once none is left, the
    /// connection is no longer crowded.
    async fn write_next_piece(&mut self) -> std::io::Result<()> {
        let Some(pieces) = self.large.front_mut() else {
            self.crowded = 0;
            return Ok(());
        };
        let size = match self.crowded {
            0 => pieces.grow(),
            _ => {
                self.crowded -= 1;
                pieces.shrink()
            }
        };
        pieces.write_next(&mut self.buf, size).await?;
        if pieces.is_done() {
            self.large.pop_front();
        }
        if self.large.is_empty() {
            self.crowded = 0;
        }
        Ok(())
    }
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
            || writing.buf.buffer().len() + framed.len() > WRITE_BUFFER
        {
            return Err(framed);
        }
        writing.wrote_small();
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
/// larger than [`PIECES_FROM`] goes out in pieces, one piece per turn, with whatever else
/// was queued meanwhile going out between them; after each piece the task yields
/// ([`spin::let_others_run`]), so the tasks that queue those frames get to run, and so do the
/// threads waiting on its CPU.
pub(crate) fn spawn_writer(writer: ByteWriter, max_frame: usize) -> FrameSender {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(WRITE_QUEUE);
    let out = Arc::new(Outbox {
        writer: tokio::sync::Mutex::new(Writing {
            buf: BufWriter::with_capacity(WRITE_BUFFER, writer),
            large: VecDeque::new(),
            crowded: 0,
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
            // What came first, then whatever else is queued; a `Flush` only asks for the flush
            // below.
            let queued = first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()));
            for outgoing in queued {
                if let Outgoing::Frame(framed) = outgoing {
                    shared.queued.fetch_sub(1, Ordering::AcqRel);
                    if writing.queue_or_write(framed).await.is_err() {
                        return;
                    }
                }
            }
            if writing.write_next_piece().await.is_err() || writing.buf.flush().await.is_err() {
                return;
            }
            idle = writing.large.is_empty();
            drop(writing);
            if !idle {
                // Between two pieces, other tasks of this thread get their turn, among them
                // those that queue frames to go out between the pieces, and so do the threads
                // waiting on this CPU.
                spin::let_others_run().await;
            }
        }
        let _ = shared.writer.lock().await.buf.shutdown().await;
    });
    FrameSender { tx, max_frame, out }
}

/// Writes all of `parts`, in as few writes as the writer takes them in: a frame's head and a
/// body too large for the buffer go to the socket in one `send`, not the head alone first.
async fn write_all_vectored(
    writer: &mut BufWriter<ByteWriter>,
    mut parts: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    // Leading empty parts dropped: nothing left to write is done, not a zero-length write.
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let written = writer.write_vectored(parts).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, written);
    }
    Ok(())
}

/// A framed message going out in pieces: its bytes from `at` on (counted over its head, then
/// its body) are still to be sent; `next` is the size of its next piece while the connection
/// is not crowded.
struct Pieces {
    framed: Framed,
    at: usize,
    next: usize,
}

impl Pieces {
    fn new(framed: Framed) -> Pieces {
        Pieces {
            framed,
            at: HEADER_LEN,
            next: SMALL_PIECE,
        }
    }

    /// The size of the next piece, and the one after twice that, up to [`PIECE_SIZE`]: a
    /// message starts small, so that a small frame sent just after it (a guest's next call
    /// after it started a large one) waits behind [`SMALL_PIECE`], not [`PIECE_SIZE`].
    fn grow(&mut self) -> usize {
        let size = self.next;
        self.next = (size * 2).min(PIECE_SIZE);
        size
    }

    /// The size of the next piece while other frames go out between them, [`SMALL_PIECE`]; once
    /// the message has the connection to itself again, its pieces grow again from there.
    fn shrink(&mut self) -> usize {
        self.next = SMALL_PIECE;
        SMALL_PIECE
    }

    /// Writes the next piece, with its own header. The first piece holds at least the whole
    /// head (the message and its payload's length), however long, so that the reader learns
    /// the payload's length from it. The header and the piece's bytes go out in one vectored
    /// write: written apart, the 4-byte header left in a `send` of its own, which woke the
    /// reader for it (two system calls a piece on each side).
    async fn write_next(
        &mut self,
        writer: &mut BufWriter<ByteWriter>,
        size: usize,
    ) -> std::io::Result<()> {
        let head_len = self.framed.head.len();
        let mut end = (self.at + size).min(self.framed.len());
        if self.at == HEADER_LEN {
            end = end.max(head_len);
        }
        let last = end == self.framed.len();
        let header = frame::Header::piece(end - self.at, last);
        // The piece's bytes of the head, then of the body (either may be none).
        let head = &self.framed.head[self.at.min(head_len)..end.min(head_len)];
        let (from, to) = (self.at.max(head_len), end.max(head_len));
        let body = &self.framed.body[from - head_len..to - head_len];
        let mut parts = [
            IoSlice::new(&header),
            IoSlice::new(head),
            IoSlice::new(body),
        ];
        write_all_vectored(writer, &mut parts).await?;
        self.at = end;
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.at == self.framed.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wire::connection::{MessageReader, pipe, reply};

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

    /// The next frame `read` gets: its size, and whether it ends a message.
    async fn next_frame(read: &mut crate::wire::stream::ByteReader) -> (usize, bool) {
        let header = frame::read_header(read).await.unwrap();
        let mut bytes = Vec::new();
        frame::read_payload(read, header.size, &mut bytes, 64 << 20)
            .await
            .unwrap();
        match header.kind {
            frame::FrameKind::Whole => (header.size, true),
            frame::FrameKind::Piece { last } => (header.size, last),
        }
    }

    /// The sizes of the pieces of one message, read to its last.
    async fn piece_sizes(read: &mut crate::wire::stream::ByteReader) -> Vec<usize> {
        let mut sizes = Vec::new();
        loop {
            let (size, last) = next_frame(read).await;
            sizes.push(size);
            if last {
                return sizes;
            }
        }
    }

    /// `count` pieces growing from [`SMALL_PIECE`] as a message's do alone.
    fn growing(count: usize) -> Vec<usize> {
        (0..count)
            .map(|i| (SMALL_PIECE << i.min(8)).min(PIECE_SIZE))
            .collect()
    }

    #[tokio::test]
    async fn pieces_start_small_grow_alone_and_stay_small_while_other_frames_go_out_between() {
        use crate::wire::stream::Stream;
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (_, write) = near.into_halves();
        let (mut read, _) = far.into_halves();
        let sender = spawn_writer(write, 64 << 20);
        // Alone: from SMALL_PIECE, each piece twice the one before, up to PIECE_SIZE.
        let message = reply(1, 3 * PIECE_SIZE);
        let total = message.clone().into_framed(64 << 20).unwrap().len() - HEADER_LEN;
        sender.send(message).await.unwrap();
        let sizes = piece_sizes(&mut read).await;
        let whole = sizes.len() - 1;
        assert_eq!(sizes[..whole], growing(whole), "pieces alone: {sizes:?}");
        assert!(sizes.contains(&PIECE_SIZE), "never grew: {sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), total);
        // A small frame between the pieces: the next ones are small.
        sender.send(reply(2, 12 * PIECE_SIZE)).await.unwrap();
        assert_eq!(next_frame(&mut read).await, (SMALL_PIECE, false));
        sender.send(reply(3, 16)).await.unwrap();
        let mut before = Vec::new();
        loop {
            let (size, ends) = next_frame(&mut read).await;
            if size < SMALL_PIECE {
                assert!(ends, "the small message, whole");
                break;
            }
            before.push(size);
        }
        let mut after = Vec::new();
        for _ in 0..CROWDED_TURNS {
            after.push(next_frame(&mut read).await.0);
        }
        assert!(
            after.iter().all(|&size| size == SMALL_PIECE),
            "pieces before the small frame {before:?}, after it {after:?}"
        );
        // Then, alone again, they grow again from small.
        let rest = piece_sizes(&mut read).await;
        assert_eq!(rest[..3], growing(3), "pieces after the crowd: {rest:?}");
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

    /// Takes at most `at_most` bytes a write, over as many slices as that covers: the socket
    /// under a vectored write that it cannot take whole.
    struct Trickle {
        taken: Arc<std::sync::Mutex<Vec<u8>>>,
        at_most: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            parts: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut taken = self.taken.lock().unwrap();
            let before = taken.len();
            for part in parts {
                let room = self.at_most - (taken.len() - before);
                taken.extend_from_slice(&part[..part.len().min(room)]);
            }
            Poll::Ready(Ok(taken.len() - before))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// `message` written in pieces of [`PIECE_SIZE`] to a socket that takes at most `at_most`
    /// bytes a write: how many pieces, and a reader of all the bytes the socket took.
    async fn in_pieces(message: &Message, at_most: usize) -> (usize, MessageReader) {
        let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let trickle: ByteWriter = Box::new(Trickle {
            taken: taken.clone(),
            at_most,
        });
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, trickle);
        let mut pieces = Pieces::new(message.clone().into_framed(64 << 20).unwrap());
        let mut count = 0;
        while !pieces.is_done() {
            pieces.write_next(&mut writer, PIECE_SIZE).await.unwrap();
            count += 1;
        }
        writer.flush().await.unwrap();
        let bytes = std::mem::take(&mut *taken.lock().unwrap());
        let reader = MessageReader::new(Box::new(std::io::Cursor::new(bytes)), 64 << 20);
        (count, reader)
    }

    #[tokio::test]
    async fn a_message_in_pieces_read_at_once_lets_the_threads_other_tasks_run() {
        use crate::wire::connection::READ_BEFORE_YIELD;
        use std::sync::atomic::AtomicBool;
        // All its pieces there before the reader starts: no read ever waits.
        let message = reply(8, 3 * READ_BEFORE_YIELD);
        let (_, mut reader) = in_pieces(&message, usize::MAX).await;
        // Another task of this (one) thread, which runs only if the reader yields.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        assert_eq!(reader.next().await.unwrap(), message);
        assert!(
            ran.load(Ordering::SeqCst),
            "the reader held the thread for all {} MiB",
            (3 * READ_BEFORE_YIELD) >> 20
        );
    }

    #[tokio::test]
    async fn pieces_written_in_parts_a_socket_takes_arrive_whole() {
        let message = reply(7, 3 * PIECE_SIZE + 17);
        for at_most in [1000, PIECE_SIZE + 3, 3 * PIECE_SIZE] {
            let (count, mut reader) = in_pieces(&message, at_most).await;
            assert_eq!(count, 4, "a piece per {PIECE_SIZE} bytes");
            assert_eq!(
                reader.next().await.unwrap(),
                message,
                "taking {at_most} a write"
            );
        }
    }
}
