//! The `net` host imports, wrapped as safe functions over byte buffers.
//!
//! Owns the raw import declarations and buffer ownership: a buffer the host returns was
//! allocated with [`crate::memory::netrun_alloc`] and is taken back here as a `Vec<u8>`, or is
//! held by the host (`netrun_abi::names::HELD`) and taken here with `input`. The
//! names are those of `netrun_abi::names::import` (attributes cannot name a constant, so they
//! are spelled here once; the runtime's ABI contract test links every one of them).
//!
//! Outside wasm (host builds of the SDK, for tests and docs) the imports do not exist: calls
//! (started ones when waited for) and `peers` answer a `Protocol` error saying so, `this_peer` describes no peer (empty id,
//! group `None`), logs and panic messages go to stderr, events reach no one, and blobs handed
//! over go nowhere (none comes back); an export's input is empty and its output goes nowhere.

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "net")]
    unsafe extern "C" {
        #[link_name = "call"]
        pub fn call(ptr: i32, len: i32) -> i64;
        #[link_name = "call_start"]
        pub fn call_start(ptr: i32, len: i32) -> i64;
        #[link_name = "call_wait"]
        pub fn call_wait(handle: i64) -> i64;
        #[link_name = "call_forget"]
        pub fn call_forget(handle: i64);
        #[link_name = "peers"]
        pub fn peers(ptr: i32, len: i32) -> i64;
        #[link_name = "this_peer"]
        pub fn this_peer() -> i64;
        #[link_name = "log"]
        pub fn log(level: i32, ptr: i32, len: i32);
        #[link_name = "panic"]
        pub fn panic(ptr: i32, len: i32);
        #[link_name = "trigger"]
        pub fn trigger(ptr: i32, len: i32);
        #[link_name = "event_json"]
        pub fn event_json(ptr: i32, len: i32) -> i32;
        #[link_name = "blob_out"]
        pub fn blob_out(ptr: i32, len: i32, index: i32);
        #[link_name = "blob_in"]
        pub fn blob_in(index: i32, len: i32) -> i64;
        #[link_name = "input"]
        pub fn input(ptr: i32, len: i32);
        #[link_name = "output"]
        pub fn output(ptr: i32, len: i32);
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use netrun_abi::names;

    use super::imports;

    /// The buffer a host import returned, packed: one the host holds (taken with `input`), or
    /// one it wrote into a buffer from `netrun_alloc`.
    ///
    /// # Safety
    ///
    /// `packed` must come from a host import that returns a buffer.
    unsafe fn take_packed(packed: i64) -> Vec<u8> {
        match names::unpack(packed) {
            (names::HELD, len) => input(len as usize),
            // SAFETY: guaranteed by the caller: not held, so a buffer from netrun_alloc.
            _ => unsafe { crate::memory::take_packed(packed) },
        }
    }

    /// The `len` bytes the host holds for the guest (an export's arguments, an import's
    /// result), in a buffer of the guest's.
    pub fn input(len: usize) -> Vec<u8> {
        let mut buffer = Box::<[u8]>::new_uninit_slice(len);
        // SAFETY: the host writes exactly `len` bytes into the buffer, or traps.
        unsafe {
            imports::input(buffer.as_mut_ptr() as i32, len as i32);
            buffer.assume_init()
        }
        .into_vec()
    }

    /// Hands an export's encoded outcome to the host, which copies it before this returns.
    pub fn output(outcome: &[u8]) {
        // SAFETY: the host only reads (copies) the bytes, before this returns.
        unsafe { imports::output(outcome.as_ptr() as i32, outcome.len() as i32) }
    }

    pub fn call(request: &[u8]) -> Vec<u8> {
        // SAFETY: the host reads `request` and returns a buffer it holds or allocated with
        // netrun_alloc.
        unsafe { take_packed(imports::call(request.as_ptr() as i32, request.len() as i32)) }
    }

    pub fn call_start(request: &[u8]) -> i64 {
        // SAFETY: the host only reads `request`; it returns a handle, not a buffer.
        unsafe { imports::call_start(request.as_ptr() as i32, request.len() as i32) }
    }

    pub fn call_wait(handle: i64) -> Vec<u8> {
        // SAFETY: the host returns a buffer it holds or allocated with netrun_alloc.
        unsafe { take_packed(imports::call_wait(handle)) }
    }

    pub fn call_forget(handle: i64) {
        // SAFETY: passes a number; no memory is shared.
        unsafe { imports::call_forget(handle) }
    }

    pub fn peers(query: &[u8]) -> Vec<u8> {
        // SAFETY: as for `call`.
        unsafe { take_packed(imports::peers(query.as_ptr() as i32, query.len() as i32)) }
    }

    pub fn this_peer() -> Vec<u8> {
        // SAFETY: the host returns a buffer it holds or allocated with netrun_alloc.
        unsafe { take_packed(imports::this_peer()) }
    }

    pub fn log(level: i32, message: &str) {
        // SAFETY: the host only reads the message.
        unsafe { imports::log(level, message.as_ptr() as i32, message.len() as i32) }
    }

    pub fn panic(message: &str) {
        // SAFETY: the host only reads the message.
        unsafe { imports::panic(message.as_ptr() as i32, message.len() as i32) }
    }

    pub fn trigger(event: &[u8]) {
        // SAFETY: the host only reads the buffer.
        unsafe { imports::trigger(event.as_ptr() as i32, event.len() as i32) }
    }

    pub fn event_json(event: &str) -> bool {
        // SAFETY: the host only reads the name.
        unsafe { imports::event_json(event.as_ptr() as i32, event.len() as i32) == 1 }
    }

    pub fn blob_out(bytes: &[u8], index: u32) {
        // SAFETY: the host only reads (copies) the bytes, before this returns.
        unsafe { imports::blob_out(bytes.as_ptr() as i32, bytes.len() as i32, index as i32) }
    }

    pub fn blob_in(index: u32, len: usize) -> Option<Vec<u8>> {
        // SAFETY: the host returns a buffer it allocated with netrun_alloc, or NO_BLOB.
        let packed = unsafe { imports::blob_in(index as i32, len as i32) };
        (packed != netrun_abi::names::NO_BLOB).then(|| unsafe { take_packed(packed) })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use netrun_abi::{CallError, CallReply, Outcome, PeerInfo, codec};

    const OUTSIDE: &str = "netrun host imports exist only inside a netrun peer (wasm32)";

    fn error() -> CallError {
        CallError::Protocol {
            peer: String::new(),
            message: OUTSIDE.to_string(),
        }
    }

    pub fn call(_request: &[u8]) -> Vec<u8> {
        let reply = CallReply {
            outcome: Outcome::Error(error()),
            served_by: None,
        };
        codec::encode(&reply).expect("a reply encodes")
    }

    pub fn call_start(_request: &[u8]) -> i64 {
        0
    }

    pub fn call_wait(_handle: i64) -> Vec<u8> {
        call(&[])
    }

    pub fn call_forget(_handle: i64) {}

    pub fn peers(_query: &[u8]) -> Vec<u8> {
        codec::encode(&Err::<Vec<PeerInfo>, _>(error())).expect("a result encodes")
    }

    pub fn this_peer() -> Vec<u8> {
        let nobody = PeerInfo {
            id: String::new(),
            host: String::new(),
            port: 0,
            group: netrun_abi::peer_id::DEFAULT_GROUP.to_string(),
            hub: false,
            appnet: false,
        };
        codec::encode(&nobody).expect("a peer encodes")
    }

    pub fn log(_level: i32, message: &str) {
        eprintln!("{message}");
    }

    pub fn panic(message: &str) {
        eprintln!("panicked: {message}");
    }

    pub fn trigger(_event: &[u8]) {}

    pub fn event_json(_event: &str) -> bool {
        false
    }

    pub fn blob_out(_bytes: &[u8], _index: u32) {}

    pub fn blob_in(_index: u32, _len: usize) -> Option<Vec<u8>> {
        None
    }

    pub fn input(_len: usize) -> Vec<u8> {
        Vec::new()
    }

    pub fn output(_outcome: &[u8]) {}
}

pub use imp::*;
