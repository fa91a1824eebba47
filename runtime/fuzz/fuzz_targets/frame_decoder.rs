//! The frame decoder on any byte stream: it never panics, never returns a frame over its
//! limit, returns exactly the bytes that were sent, and ends the stream with the right error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netrun::wire::frame::{FrameError, HEADER_LEN, read_frame};
use netrun_fuzz::runtime;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the frame limit (1 byte to 8 MiB), the rest is the stream.
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let max = 1usize << (pick % 24);
    runtime().block_on(async {
        let mut reader = stream;
        let mut buf = Vec::new();
        let mut consumed = 0;
        loop {
            match read_frame(&mut reader, &mut buf, max).await {
                Ok(_kind) => {
                    assert!(buf.len() <= max, "a frame of {} over {max}", buf.len());
                    let start = consumed + HEADER_LEN;
                    assert_eq!(&stream[start..start + buf.len()], &buf[..]);
                    consumed = start + buf.len();
                }
                Err(FrameError::Closed) => {
                    assert_eq!(consumed, stream.len(), "closed inside a frame");
                    return;
                }
                Err(FrameError::Truncated) => {
                    assert!(consumed < stream.len(), "truncated after the last frame");
                    return;
                }
                Err(FrameError::TooLarge { size, max: limit }) => {
                    assert!(size > limit && limit == max);
                    return;
                }
                Err(FrameError::Io(e)) => panic!("a byte slice cannot fail to read: {e}"),
            }
        }
    });
});
