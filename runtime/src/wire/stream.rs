//! The byte streams a connection runs over, and its two halves: what the reading side
//! ([`crate::wire::connection`]) and the writing side ([`crate::wire::writer`]) each own.
//!
//! A TCP connection's reading half looks at the socket itself while its reader polls awake
//! ([`TcpReading`]).

use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use crate::wire::spin;

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
        let fd = self.as_raw_fd();
        let (read, write) = self.into_split();
        (Box::new(TcpReading { half: read, fd }), Box::new(write))
    }
}

/// The reading half of a TCP connection. Tokio reads a socket only once epoll has said it is
/// readable, which a task polling awake learns at its next turn of the runtime, after one
/// more system call and a wake of the reading task (about 1 µs of each hop of a call on
/// loopback, docs/performance.md). While its reader polls awake ([`spin::poll_awake`]), a
/// read tokio finds nothing for is tried on the socket at once, without waiting: what came
/// since epoll last looked is read by the same system call that finds it.
struct TcpReading {
    half: OwnedReadHalf,
    /// The socket's descriptor, owned by `half`.
    fd: RawFd,
}

impl AsyncRead for TcpReading {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.half).poll_read(cx, buf);
        if polled.is_ready() || !spin::polling_awake() || buf.remaining() == 0 {
            return polled;
        }
        // SAFETY: `recv` writes at most `unfilled.len()` bytes into `unfilled`, which `buf`
        // lends for writing; the descriptor stays open while `half` owns it.
        let got = unsafe {
            let unfilled = buf.unfilled_mut();
            libc::recv(
                self.fd,
                unfilled.as_mut_ptr().cast(),
                unfilled.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(got) {
            Ok(read) => {
                // SAFETY: `recv` initialized the first `read` bytes of the unfilled part.
                unsafe { buf.assume_init(read) };
                buf.advance(read);
                // Some bytes, or none at the end of the stream.
                Poll::Ready(Ok(()))
            }
            Err(_) => {
                let error = std::io::Error::last_os_error();
                match error.kind() {
                    // Nothing yet: tokio has registered the waker for when epoll says so.
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {
                        Poll::Pending
                    }
                    _ => Poll::Ready(Err(error)),
                }
            }
        }
    }
}

impl Stream for tokio::io::DuplexStream {
    fn into_halves(self) -> (ByteReader, ByteWriter) {
        let (read, write) = tokio::io::split(self);
        (Box::new(read), Box::new(write))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn a_read_polled_awake_takes_what_came_before_epoll_said_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut far = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        near.set_nonblocking(true).unwrap();
        let (mut reading, _writing) = TcpStream::from_std(near).unwrap().into_halves();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut bytes = [0u8; 16];
        let mut poll = |buf: &mut ReadBuf<'_>| Pin::new(&mut reading).poll_read(&mut cx, buf);
        // Nothing has come: pending, awake or not.
        let mut buf = ReadBuf::new(&mut bytes);
        assert!(poll(&mut buf).is_pending());
        assert!(spin::awake(|| poll(&mut buf)).is_pending());
        // On loopback the bytes are in once `write` returns; the runtime has not looked at
        // epoll since (this task has not yielded), so tokio still finds nothing.
        far.write_all(b"ping").unwrap();
        assert!(poll(&mut buf).is_pending());
        // Polled awake, the read finds them.
        assert!(matches!(
            spin::awake(|| poll(&mut buf)),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(buf.filled(), b"ping");
        assert!(!spin::polling_awake());
    }
}
