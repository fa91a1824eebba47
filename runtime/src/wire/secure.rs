//! The cluster secret, and what it secures: every TCP connection is mutually authenticated and
//! encrypted with Noise (`Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`, from the `snow` crate, whose
//! records `ring`'s ChaCha20-Poly1305 seals), keyed by the secret; every gossip datagram is
//! sealed with XChaCha20-Poly1305 (RustCrypto). No cryptography is written here: this module
//! derives keys, runs the handshake and frames the encrypted records.
//!
//! A secured connection starts with [`SECURE_MAGIC`], so a side without the secret can tell at
//! once and refuse it clearly (a plaintext connection starts with a frame header). After the
//! two handshake messages, the byte stream is a sequence of records: a `u16` big-endian length
//! and a Noise transport message of at most 65535 bytes. [`Opener`] and [`Sealer`] turn the
//! halves of a connection into plaintext streams, so frames read and write as they do without
//! a secret.
//!
//! A party with another secret fails the handshake: NNpsk0 mixes the key into the first
//! message, which the responder cannot then decrypt. The secret never appears in `Debug`
//! output, errors or logs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What a secured connection starts with.
pub const SECURE_MAGIC: [u8; 4] = *b"NRTS";
/// The Noise protocol of every secured connection.
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Largest Noise message, and the tag each carries.
const MAX_RECORD: usize = 65535;
const TAG: usize = 16;
/// Largest plaintext in one record.
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// What the gossip's datagrams are sealed with as associated data.
const GOSSIP_CONTEXT: &[u8] = b"netrun gossip 1";

/// Keys derived from the cluster secret. Cheap to clone; never shows the secret.
#[derive(Clone)]
pub struct ClusterKey {
    /// The Noise pre-shared key.
    psk: [u8; 32],
    /// The gossip's datagram key.
    gossip: Arc<XChaCha20Poly1305>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

impl ClusterKey {
    /// The keys of `secret` (its bytes as given: a file's trailing newline is removed by the
    /// caller). Each key is SHA-256 of a label and the secret.
    pub fn from_secret(secret: &[u8]) -> ClusterKey {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut hash = Sha256::new();
            hash.update(label);
            hash.update(secret);
            hash.finalize().into()
        };
        let gossip = derive(b"netrun cluster secret 1: gossip");
        ClusterKey {
            psk: derive(b"netrun cluster secret 1: noise psk"),
            gossip: Arc::new(XChaCha20Poly1305::new(&gossip.into())),
        }
    }

    /// Seals a gossip datagram: a random nonce, then the ciphertext.
    pub fn seal_datagram(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = rand::random();
        let sealed = self
            .gossip
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: GOSSIP_CONTEXT,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any datagram");
        let mut out = Vec::with_capacity(nonce.len() + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a datagram [`ClusterKey::seal_datagram`] sealed with the same secret; `None` for
    /// anything else.
    pub fn open_datagram(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        let (nonce, sealed) = datagram.split_at_checked(24)?;
        self.gossip
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: GOSSIP_CONTEXT,
                },
            )
            .ok()
    }

    fn builder(&self) -> Result<snow::Builder<'_>, io::Error> {
        snow::Builder::new(NOISE.parse().map_err(noise_error)?)
            .psk(0, &self.psk)
            .map_err(noise_error)
    }
}

/// Why a secured handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("authentication failed: {0}")]
    Authentication(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn noise_error(e: snow::Error) -> io::Error {
    io::Error::other(format!("noise: {e}"))
}

/// How an initiated handshake went.
pub enum Initiated {
    /// Both sides have the secret: the channel is secured.
    Secured(Arc<StatelessTransportState>),
    /// The answer does not start with the magic: the other side has no secret and answered in
    /// plaintext; these are its first four bytes (a frame's length).
    Plaintext([u8; 4]),
}

/// The initiator's side of the handshake, after it wrote nothing yet: sends the magic and the
/// first message, reads the answer.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &ClusterKey,
) -> Result<Initiated, SecureError> {
    let mut noise = key.builder()?.build_initiator().map_err(noise_error)?;
    let mut message = vec![0u8; MAX_RECORD];
    let len = noise
        .write_message(&[], &mut message)
        .map_err(noise_error)?;
    let mut first = SECURE_MAGIC.to_vec();
    first.extend_from_slice(&(len as u16).to_be_bytes());
    first.extend_from_slice(&message[..len]);
    stream.write_all(&first).await?;
    stream.flush().await?;
    let mut magic = [0u8; 4];
    match stream.read_exact(&mut magic).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(SecureError::Authentication(
                "the peer closed the connection during the handshake: it has another cluster secret".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    if magic != SECURE_MAGIC {
        return Ok(Initiated::Plaintext(magic));
    }
    let answer = read_record(stream).await?;
    let mut payload = vec![0u8; MAX_RECORD];
    noise
        .read_message(&answer, &mut payload)
        .map_err(|_| SecureError::Authentication("the peer's answer does not verify".into()))?;
    let transport = noise.into_stateless_transport_mode().map_err(noise_error)?;
    Ok(Initiated::Secured(Arc::new(transport)))
}

/// The responder's side, after it read the magic: reads the first message, answers with the
/// magic and the second. Fails when the initiator has another secret.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &ClusterKey,
) -> Result<Arc<StatelessTransportState>, SecureError> {
    let mut noise = key.builder()?.build_responder().map_err(noise_error)?;
    let first = read_record(stream).await?;
    let mut payload = vec![0u8; MAX_RECORD];
    noise.read_message(&first, &mut payload).map_err(|_| {
        SecureError::Authentication(
            "the caller's handshake does not verify: it has another cluster secret".into(),
        )
    })?;
    let mut message = vec![0u8; MAX_RECORD];
    let len = noise
        .write_message(&[], &mut message)
        .map_err(noise_error)?;
    let mut answer = SECURE_MAGIC.to_vec();
    answer.extend_from_slice(&(len as u16).to_be_bytes());
    answer.extend_from_slice(&message[..len]);
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let transport = noise.into_stateless_transport_mode().map_err(noise_error)?;
    Ok(Arc::new(transport))
}

/// Reads one record: a `u16` length and that many bytes.
async fn read_record<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut record = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut record).await?;
    Ok(record)
}

/// How many bytes of records an [`Opener`] reads from the socket at a time: a few records,
/// so that one `recv` brings in a record's prefix and its bytes, and more.
const RAW_BUFFER: usize = 4 * (2 + MAX_RECORD);

/// The reading half of a secured connection, as a plaintext stream. It reads records in large
/// chunks (one `recv` for a small record's prefix and bytes together), and opens each one
/// straight into the reader's buffer when it fits there.
pub struct Opener<R> {
    inner: R,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    /// Bytes read from the socket, records not yet opened, from `start` to `end`.
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    /// Opened bytes the reader had no room for, handed out from `pos`.
    plain: Vec<u8>,
    pos: usize,
}

impl<R> Opener<R> {
    pub fn new(inner: R, transport: Arc<StatelessTransportState>) -> Opener<R> {
        Opener {
            inner,
            transport,
            nonce: 0,
            raw: vec![0u8; RAW_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            plain: Vec::new(),
            pos: 0,
        }
    }

    /// The next whole record in `raw` (without its prefix), if one is in.
    fn whole_record(&self) -> Option<std::ops::Range<usize>> {
        let held = &self.raw[self.start..self.end];
        let len = usize::from(u16::from_be_bytes([*held.first()?, *held.get(1)?]));
        (held.len() >= 2 + len).then(|| self.start + 2..self.start + 2 + len)
    }

    /// Opens `record` into `out`; the number of plaintext bytes.
    fn open(&mut self, record: std::ops::Range<usize>, out: &mut [u8]) -> io::Result<usize> {
        let len = self
            .transport
            .read_message(self.nonce, &self.raw[record.clone()], out)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a record does not verify"))?;
        self.nonce += 1;
        self.start = record.end;
        Ok(len)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Opener<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.plain.len() {
                let n = out.remaining().min(this.plain.len() - this.pos);
                out.put_slice(&this.plain[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(record) = this.whole_record() {
                let plain_len = record.len().saturating_sub(TAG);
                if out.remaining() >= plain_len {
                    let n = this.open(record, out.initialize_unfilled_to(plain_len))?;
                    out.advance(n);
                    if n > 0 {
                        return Poll::Ready(Ok(()));
                    }
                    // An empty record: nothing to hand out yet.
                    continue;
                }
                let mut plain = std::mem::take(&mut this.plain);
                plain.resize(plain_len, 0);
                let n = this.open(record, &mut plain)?;
                plain.truncate(n);
                this.plain = plain;
                this.pos = 0;
                continue;
            }
            // No whole record in: keep the part that is, and read more after it.
            if this.start > 0 {
                this.raw.copy_within(this.start..this.end, 0);
                this.end -= this.start;
                this.start = 0;
            }
            let mut buf = ReadBuf::new(&mut this.raw[this.end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                // A clean end between records is the end of the stream.
                return Poll::Ready(if this.end == 0 {
                    Ok(())
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                });
            }
            this.end += n;
        }
    }
}

/// The writing half of a secured connection, as a plaintext stream: each write becomes one
/// record (at most [`MAX_PLAIN`] bytes of it), written out before the next is made.
pub struct Sealer<W> {
    inner: W,
    transport: Arc<StatelessTransportState>,
    nonce: u64,
    /// A sealed record not yet written, from `written`.
    out: Vec<u8>,
    written: usize,
}

impl<W> Sealer<W> {
    pub fn new(inner: W, transport: Arc<StatelessTransportState>) -> Sealer<W> {
        Sealer {
            inner,
            transport,
            nonce: 0,
            out: Vec::new(),
            written: 0,
        }
    }
}

impl<W: AsyncWrite + Unpin> Sealer<W> {
    /// Writes out what is sealed and not yet written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Sealer<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let take = buf.len().min(MAX_PLAIN);
        this.out.resize(2 + take + TAG, 0);
        let len = this
            .transport
            .write_message(this.nonce, &buf[..take], &mut this.out[2..])
            .map_err(noise_error)?;
        this.out.truncate(2 + len);
        this.out[..2].copy_from_slice(&(len as u16).to_be_bytes());
        this.nonce += 1;
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_secret_talks_and_the_bytes_on_the_wire_are_not_the_text() {
        let (sealing, opening, mut a, b) = handshaken().await;
        let (tap_read, tap_write) = tokio::io::duplex(1 << 20);
        // Everything sealed goes through a tap first, to see what crosses the wire.
        let mut sealer = Sealer::new(tap_write, sealing);
        let text: Vec<u8> = b"the plain text of a call "
            .iter()
            .copied()
            .cycle()
            .take(100_000)
            .collect();
        sealer.write_all(&text).await.unwrap();
        sealer.shutdown().await.unwrap();
        let mut wire = Vec::new();
        let mut tap_read = tap_read;
        tap_read.read_to_end(&mut wire).await.unwrap();
        assert!(
            !wire.windows(20).any(|w| w == &text[..20]),
            "plain text on the wire"
        );
        // Records follow the handshake on the same stream.
        a.write_all(&wire).await.unwrap();
        drop(a);
        let mut opened = Opener::new(b, opening);
        let mut read = vec![0u8; text.len()];
        opened.read_exact(&mut read).await.unwrap();
        assert_eq!(read, text);
    }

    /// The two ends' transports after a handshake with one secret, and the two ends of the
    /// stream it went over (the initiator's, the responder's).
    async fn handshaken() -> (
        Arc<StatelessTransportState>,
        Arc<StatelessTransportState>,
        tokio::io::DuplexStream,
        tokio::io::DuplexStream,
    ) {
        let key = ClusterKey::from_secret(b"sesame");
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let responder = tokio::spawn(async move {
            let mut magic = [0u8; 4];
            b.read_exact(&mut magic).await.unwrap();
            assert_eq!(magic, SECURE_MAGIC);
            let transport = respond(&mut b, &ClusterKey::from_secret(b"sesame"))
                .await
                .unwrap();
            (transport, b)
        });
        let Initiated::Secured(initiator) = initiate(&mut a, &key).await.unwrap() else {
            panic!("not secured");
        };
        let (responder, b) = responder.await.unwrap();
        (initiator, responder, a, b)
    }

    /// Writes `writes` through a [`Sealer`] into a pipe of `pipe` bytes and reads them back
    /// through an [`Opener`] into buffers of `read_size`: the bytes that came out.
    async fn through_pipe(writes: &[Vec<u8>], pipe: usize, read_size: usize) -> Vec<u8> {
        let (sealing, opening, ..) = handshaken().await;
        let (wire_in, wire_out) = tokio::io::duplex(pipe);
        let writes = writes.to_vec();
        let writer = tokio::spawn(async move {
            let mut sealer = Sealer::new(wire_in, sealing);
            for write in writes {
                // One `write` call per buffer: an empty one makes an empty record.
                let mut at = 0;
                loop {
                    at += sealer.write(&write[at..]).await.unwrap();
                    if at == write.len() {
                        break;
                    }
                }
                sealer.flush().await.unwrap();
            }
            sealer.shutdown().await.unwrap();
        });
        let mut opener = Opener::new(wire_out, opening);
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = opener.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn records_come_out_whole_however_the_socket_splits_them_and_however_small_the_reads() {
        let writes: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            Vec::new(),
            (0..100).map(|i| i as u8).collect(),
            // More than one record's worth: two records.
            (0..MAX_PLAIN + 5000).map(|i| (i % 253) as u8).collect(),
            b"tail".to_vec(),
        ];
        let all: Vec<u8> = writes.concat();
        // A pipe of 7 bytes hands the opener a record's prefix and bytes in many reads; a
        // pipe of 1 MiB hands it several records in one.
        for pipe in [7, 1 << 20] {
            // Reads of 10 bytes take a record's plaintext in parts; reads of 64 KiB take it
            // whole, opened straight into the reader's buffer.
            for read_size in [10, 64 * 1024] {
                assert_eq!(
                    through_pipe(&writes, pipe, read_size).await,
                    all,
                    "pipe {pipe}, reads of {read_size}"
                );
            }
        }
    }

    /// Counts the reads that brought bytes.
    struct CountingReader<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for CountingReader<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                self.reads += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn records_that_are_in_are_read_from_the_socket_at_once() {
        let (sealing, opening, ..) = handshaken().await;
        let mut wire = Vec::new();
        let mut sealer = Sealer::new(&mut wire, sealing);
        for text in [&b"first"[..], b"second", b"third"] {
            sealer.write_all(text).await.unwrap();
            sealer.flush().await.unwrap();
        }
        let mut opener = Opener::new(
            CountingReader {
                inner: &wire[..],
                reads: 0,
            },
            opening,
        );
        let mut text = Vec::new();
        opener.read_to_end(&mut text).await.unwrap();
        assert_eq!(text, b"firstsecondthird");
        // Not one read for each record's length and one for its bytes.
        assert_eq!(opener.inner.reads, 1);
    }

    #[tokio::test]
    async fn a_changed_byte_or_a_cut_record_is_an_error_not_plaintext() {
        let (sealing, opening, ..) = handshaken().await;
        let mut wire = Vec::new();
        let mut sealer = Sealer::new(&mut wire, sealing);
        sealer.write_all(b"the plain text").await.unwrap();
        sealer.flush().await.unwrap();
        let mut changed = wire.clone();
        *changed.last_mut().unwrap() ^= 1;
        let mut text = Vec::new();
        let err = Opener::new(&changed[..], opening.clone())
            .read_to_end(&mut text)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let cut = &wire[..wire.len() - 1];
        let err = Opener::new(cut, opening)
            .read_to_end(&mut text)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        assert!(text.is_empty(), "plaintext came out: {text:?}");
    }

    #[tokio::test]
    async fn another_secret_fails_the_handshake_on_both_sides() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let responder = tokio::spawn(async move {
            let mut magic = [0u8; 4];
            b.read_exact(&mut magic).await.unwrap();
            respond(&mut b, &ClusterKey::from_secret(b"right"))
                .await
                .map(|_| ())
        });
        let initiator = initiate(&mut a, &ClusterKey::from_secret(b"wrong")).await;
        let Err(SecureError::Authentication(why)) = responder.await.unwrap() else {
            panic!("the responder accepted another secret");
        };
        assert!(why.contains("another cluster secret"), "{why}");
        assert!(matches!(initiator, Err(SecureError::Authentication(_))));
    }

    #[test]
    fn gossip_datagrams_open_only_with_the_same_secret() {
        let key = ClusterKey::from_secret(b"sesame");
        let sealed = key.seal_datagram(b"member 10.0.0.1 is up");
        assert_eq!(
            key.open_datagram(&sealed).as_deref(),
            Some(&b"member 10.0.0.1 is up"[..])
        );
        assert!(
            ClusterKey::from_secret(b"other")
                .open_datagram(&sealed)
                .is_none()
        );
        assert!(key.open_datagram(b"member 10.0.0.1 is up").is_none());
        assert_eq!(format!("{key:?}"), "ClusterKey(<redacted>)");
    }
}
