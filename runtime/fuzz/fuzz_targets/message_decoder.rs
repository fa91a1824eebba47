//! The message decoder on any frame payload: it never panics, and what it accepts encodes
//! again to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netrun::wire::frame::HEADER_LEN;
use netrun::wire::message::Message;

fuzz_target!(|payload: &[u8]| {
    let Ok(message) = Message::decode(payload) else {
        return;
    };
    let framed = message
        .to_frame(u32::MAX as usize)
        .expect("a decoded message encodes");
    let again = Message::decode(&framed[HEADER_LEN..]).expect("an encoded message decodes");
    assert_eq!(again, message);
});
