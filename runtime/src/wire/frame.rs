//! Length-prefixed frames: a `u32` big-endian header, then the payload.
//!
//! The header's low 30 bits are the payload's length; its top bits say what the frame is. A
//! message goes out whole (neither bit), or, when it is large, in pieces ([`PIECE`] set on
//! each, [`MORE`] on all but the last), so that other frames can go out between them: one
//! 8 MiB call does not hold small calls behind it on the same connection. A side sends the
//! pieces of one message at a time, so a reader needs one buffer to put them together.
//!
//! Owns the framing and the size limit, nothing else: what a payload means is
//! [`crate::wire::message`]'s job. A frame longer than the limit is refused from its header
//! alone, before anything of the claimed size is allocated, and the caller closes the
//! connection; so is a message whose pieces add up to more than the limit.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default limit on one frame's payload: an 8 MiB argument fits with room to spare.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Header bit: the frame is a piece of a message sent in pieces.
pub const PIECE: u32 = 1 << 31;
/// Header bit, with [`PIECE`]: more pieces of the same message follow.
pub const MORE: u32 = 1 << 30;
/// The largest payload a header can say: a message, even in pieces, is never larger.
pub const MAX_PAYLOAD: usize = (MORE - 1) as usize;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The payload's length.
    pub size: usize,
    /// What the payload is.
    pub kind: FrameKind,
}

/// A whole message, or a piece of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Whole,
    /// A piece; `last` ends its message.
    Piece {
        last: bool,
    },
}

impl Header {
    fn decode(bytes: [u8; HEADER_LEN]) -> Header {
        let word = u32::from_be_bytes(bytes);
        let kind = match (word & PIECE != 0, word & MORE != 0) {
            (false, _) => FrameKind::Whole,
            (true, more) => FrameKind::Piece { last: !more },
        };
        // A whole frame's size is all 31 bits, so an oversized one is refused as it was.
        let size = match kind {
            FrameKind::Whole => word as usize,
            FrameKind::Piece { .. } => (word & (MORE - 1)) as usize,
        };
        Header { size, kind }
    }

    /// The header of a piece of `size` bytes (at most [`MAX_PAYLOAD`]).
    pub fn piece(size: usize, last: bool) -> [u8; HEADER_LEN] {
        debug_assert!(size <= MAX_PAYLOAD);
        let more = if last { 0 } else { MORE };
        (PIECE | more | size as u32).to_be_bytes()
    }
}

/// Reads the next frame's header. `Closed` on a clean end of stream before it, `Truncated`
/// on an end inside it.
pub async fn read_header<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Header, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Err(FrameError::Closed),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    Ok(Header::decode(header))
}

/// Appends the `size` bytes of a payload to `buf`; `TooLarge` (before reading any) if `buf`
/// would hold more than `max` bytes, `Truncated` if the stream ends first.
///
/// The buffer grows with the bytes that actually arrive, not with the length the header
/// claims: a header announcing a large frame, followed by silence, costs nothing.
pub async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), FrameError> {
    let total = buf.len().saturating_add(size);
    if total > max {
        return Err(FrameError::TooLarge { size: total, max });
    }
    let read = reader.take(size as u64).read_to_end(buf).await?;
    if read < size {
        return Err(FrameError::Truncated);
    }
    Ok(())
}

/// Reads one frame, whole or a piece, putting its payload in `buf` (replacing its contents).
/// `Closed` on a clean end of stream between frames, `Truncated` on an end anywhere inside
/// one (its header included), `TooLarge` for a payload over `max`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<FrameKind, FrameError> {
    let Header { size, kind } = read_header(reader).await?;
    buf.clear();
    read_payload(reader, size, buf, max).await?;
    Ok(kind)
}

/// Starts a frame in `out`: reserves the header, to be filled by [`finish_frame`] once the
/// payload has been appended. Lets a message be encoded straight into the outgoing buffer.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Writes the header of the frame begun at `start`, whose payload is what `out` holds after the
/// header and then `more` bytes sent from a buffer of their own; checks the whole payload
/// against `max`.
pub fn finish_frame(
    out: &mut Vec<u8>,
    start: usize,
    more: usize,
    max: usize,
) -> Result<(), FrameError> {
    let size = (out.len() - start - HEADER_LEN).saturating_add(more);
    let max = max.min(MAX_PAYLOAD);
    if size > max {
        out.truncate(start);
        return Err(FrameError::TooLarge { size, max });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(size as u32).to_be_bytes());
    Ok(())
}

/// Writes one already-framed buffer and flushes.
pub async fn write_all_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    framed: &[u8],
) -> Result<(), FrameError> {
    writer.write_all(framed).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        let start = begin_frame(&mut out);
        out.extend_from_slice(payload);
        finish_frame(&mut out, start, 0, max)?;
        Ok(out)
    }

    #[tokio::test]
    async fn round_trips_frames_back_to_back() {
        let mut wire = framed(b"hello", 100).unwrap();
        wire.extend(framed(b"", 100).unwrap());
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        read_frame(&mut reader, &mut buf, 100).await.unwrap();
        assert_eq!(buf, b"hello");
        read_frame(&mut reader, &mut buf, 100).await.unwrap();
        assert!(buf.is_empty());
        assert!(matches!(
            read_frame(&mut reader, &mut buf, 100).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn refuses_an_oversized_header_without_allocating() {
        let wire = (u32::MAX >> 1).to_be_bytes();
        let mut buf = Vec::new();
        let err = read_frame(&mut &wire[..], &mut buf, 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { size, max: 1024 } if size == (u32::MAX >> 1) as usize)
        );
        assert_eq!(buf.capacity(), 0);
    }

    #[tokio::test]
    async fn reports_truncation_in_the_payload_and_in_the_header() {
        let whole = framed(b"hello", 100).unwrap();
        for cut in [1, 3, 4, 6] {
            let mut buf = Vec::new();
            let read = read_frame(&mut &whole[..cut], &mut buf, 100).await;
            assert!(
                matches!(read, Err(FrameError::Truncated)),
                "cut at {cut}: {read:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_claimed_length_costs_nothing_until_its_bytes_arrive() {
        // A header claiming 60 MiB, then 3 bytes and the end: the buffer holds what came.
        let mut wire = (60u32 << 20).to_be_bytes().to_vec();
        wire.extend_from_slice(b"abc");
        let mut buf = Vec::new();
        let read = read_frame(&mut &wire[..], &mut buf, 64 << 20).await;
        assert!(matches!(read, Err(FrameError::Truncated)), "{read:?}");
        assert!(
            buf.capacity() < 1 << 20,
            "reserved {} bytes",
            buf.capacity()
        );
    }

    #[tokio::test]
    async fn a_piece_says_whether_more_follow() {
        let mut wire = Header::piece(3, false).to_vec();
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&Header::piece(2, true));
        wire.extend_from_slice(b"de");
        wire.extend(framed(b"whole", 100).unwrap());
        let mut reader = &wire[..];
        let mut buf = Vec::new();
        let kinds = [
            (FrameKind::Piece { last: false }, &b"abc"[..]),
            (FrameKind::Piece { last: true }, b"de"),
            (FrameKind::Whole, b"whole"),
        ];
        for (kind, payload) in kinds {
            assert_eq!(read_frame(&mut reader, &mut buf, 100).await.unwrap(), kind);
            assert_eq!(buf, payload);
        }
        // A piece over the limit is refused from its header, like a whole frame.
        let big = Header::piece(MAX_PAYLOAD, true);
        let read = read_frame(&mut &big[..], &mut buf, 100).await;
        assert!(
            matches!(read, Err(FrameError::TooLarge { max: 100, .. })),
            "{read:?}"
        );
    }

    #[test]
    fn refuses_to_write_an_oversized_frame() {
        assert!(matches!(
            framed(&[0; 11], 10),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        ));
    }
}
