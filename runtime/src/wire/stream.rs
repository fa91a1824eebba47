//! The byte streams a connection runs over, and its two halves: what the reading side
//! ([`crate::wire::connection`]) and the writing side ([`crate::wire::writer`]) each own.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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
