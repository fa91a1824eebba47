//! Length-prefixed frames: a `u32` big-endian payload length, then the payload.
//!
//! Owns the framing and the size limit, nothing else: what a payload means is
//! [`crate::wire::message`]'s job. A frame longer than the limit is refused from its header
//! alone, before anything of the claimed size is allocated, and the caller closes the
//! connection.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default limit on one frame's payload: an 8 MiB argument fits with room to spare.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

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

/// Reads one frame's payload into `buf` (replacing its contents). `Closed` on a clean end of
/// stream between frames, `Truncated` on an end anywhere inside one (its header included).
///
/// The buffer grows with the bytes that actually arrive, not with the length the header
/// claims: a header announcing a large frame, followed by silence, costs nothing.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]).await? {
            0 if filled == 0 => return Err(FrameError::Closed),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let size = u32::from_be_bytes(header) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    buf.clear();
    let read = reader.take(size as u64).read_to_end(buf).await?;
    if read < size {
        return Err(FrameError::Truncated);
    }
    Ok(())
}

/// Starts a frame in `out`: reserves the header, to be filled by [`finish_frame`] once the
/// payload has been appended. Lets a message be encoded straight into the outgoing buffer.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    start
}

/// Writes the header of the frame begun at `start`, checking the payload against `max`.
pub fn finish_frame(out: &mut Vec<u8>, start: usize, max: usize) -> Result<(), FrameError> {
    let size = out.len() - start - HEADER_LEN;
    if size > max || u32::try_from(size).is_err() {
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
        finish_frame(&mut out, start, max)?;
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
        let wire = u32::MAX.to_be_bytes();
        let mut buf = Vec::new();
        let err = read_frame(&mut &wire[..], &mut buf, 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { size, max: 1024 } if size == u32::MAX as usize)
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

    #[test]
    fn refuses_to_write_an_oversized_frame() {
        assert!(matches!(
            framed(&[0; 11], 10),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        ));
    }
}
