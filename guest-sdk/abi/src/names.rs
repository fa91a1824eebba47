//! Names and numbers of the ABI: nothing else in the project spells these strings.

/// The ABI version this crate describes. A module records the version it was built for in
/// every manifest record; the host refuses a module built for another version. Version 2: calls
/// name a target (a peer or any member of a group), replies say who served them, timeouts name
/// their stage, and calls can be started and waited for separately. Version 3: app-net peers
/// (`PeerInfo::appnet`, JSON calls and event values, subscription handlers' JSON entries).
/// Version 4: blobs travel beside the values that hold them (`blob_out`, `blob_in`; see
/// [`crate::blob`]). Version 5: an export takes its arguments (`input`) and hands its outcome
/// over (`output`) itself, and the host holds a small reply for the guest to take (`input`),
/// rather than entering the guest to allocate and to free each buffer ([`HELD`]).
pub const ABI_VERSION: u32 = 5;

/// The pointer of a buffer the host holds rather than wrote into guest memory. An export is
/// called with `(HELD, len)`: its arguments, `len` bytes, are the host's until the export takes
/// them into a buffer of its own with [`import::INPUT`], which it does first. An import that
/// returns `pack(HELD, len)` holds its result the same way, for the guest to take at once.
/// No buffer of the guest's can start there with bytes in it (memory ends at 4 GiB).
pub const HELD: u32 = u32::MAX;

/// The wasm import module that holds every host function.
pub const IMPORT_MODULE: &str = "net";

/// Custom section holding the module's manifest records (see [`crate::manifest`]).
pub const MANIFEST_SECTION: &str = "netrun.manifest";

/// Export prefix of a connected function's bincode entry: `(HELD, args_len) -> i64` (see
/// [`HELD`]: the export takes its arguments with [`import::INPUT`], hands its outcome over with
/// [`import::OUTPUT`] and returns 0; every export below does the same).
pub const EXPORT_FN_PREFIX: &str = "__netrun_fn:";
/// Export prefix of a connected function's JSON entry: `(HELD, json_len) -> i64`.
pub const EXPORT_JSON_PREFIX: &str = "__netrun_json:";
/// Export prefix of a subscription handler (by Rust name), bincode: `(ptr, len) -> i64`.
pub const EXPORT_SUBSCRIBER_PREFIX: &str = "__netrun_sub:";
/// Export prefix of a subscription handler's JSON entry (a JSON array of its arguments), for
/// events from app-net peers: `(ptr, len) -> i64`.
pub const EXPORT_SUBSCRIBER_JSON_PREFIX: &str = "__netrun_subjson:";
/// Export prefix of a flag handler (by flag name): `(ptr, len) -> i64`; its arguments are
/// `(function: String, peer: PeerInfo)`.
pub const EXPORT_FLAG_PREFIX: &str = "__netrun_flag:";
/// Export prefix of an entry point: `() -> i64`.
pub const EXPORT_ENTRY_PREFIX: &str = "__netrun_entry:";
/// Guest allocator export: `(len: i32) -> ptr: i32`.
pub const EXPORT_ALLOC: &str = "netrun_alloc";
/// Guest deallocator export: `(ptr: i32, len: i32)`. The host no longer frees guest buffers
/// (since version 5 an export hands its outcome over with [`import::OUTPUT`]), but modules
/// still export it, and the host still checks its type.
pub const EXPORT_FREE: &str = "netrun_free";
/// The guest's linear memory export.
pub const EXPORT_MEMORY: &str = "memory";
/// WASI reactor initializer, run once after instantiation when present.
pub const EXPORT_INITIALIZE: &str = "_initialize";

/// What an export of the ABI is for; each kind has its name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// A connected function's bincode entry ([`EXPORT_FN_PREFIX`]).
    Function,
    /// A connected function's JSON entry ([`EXPORT_JSON_PREFIX`]).
    Json,
    /// A subscription handler, by Rust name ([`EXPORT_SUBSCRIBER_PREFIX`]).
    Subscriber,
    /// A subscription handler's JSON entry ([`EXPORT_SUBSCRIBER_JSON_PREFIX`]).
    SubscriberJson,
    /// A flag handler, by flag name ([`EXPORT_FLAG_PREFIX`]).
    Flag,
    /// An entry point ([`EXPORT_ENTRY_PREFIX`]).
    Entry,
}

impl ExportKind {
    /// The prefix of this kind's export names.
    pub const fn prefix(self) -> &'static str {
        match self {
            ExportKind::Function => EXPORT_FN_PREFIX,
            ExportKind::Json => EXPORT_JSON_PREFIX,
            ExportKind::Subscriber => EXPORT_SUBSCRIBER_PREFIX,
            ExportKind::SubscriberJson => EXPORT_SUBSCRIBER_JSON_PREFIX,
            ExportKind::Flag => EXPORT_FLAG_PREFIX,
            ExportKind::Entry => EXPORT_ENTRY_PREFIX,
        }
    }
}

/// The name of the export of `kind` for the item `name`: the one place export names are built.
///
/// ```
/// use netrun_abi::names::{ExportKind, export};
/// assert_eq!(export(ExportKind::Function, "greet"), "__netrun_fn:greet");
/// ```
pub fn export(kind: ExportKind, name: &str) -> String {
    format!("{}{name}", kind.prefix())
}

/// Host import names (module [`IMPORT_MODULE`]).
pub mod import {
    /// `call(req_ptr, req_len) -> i64`: run a [`crate::CallRequest`] and wait for it; returns a
    /// [`crate::CallReply`].
    pub const CALL: &str = "call";
    /// `call_start(req_ptr, req_len) -> i64`: start a [`crate::CallRequest`] without waiting;
    /// returns a handle (not a buffer) for [`CALL_WAIT`] and [`CALL_FORGET`].
    pub const CALL_START: &str = "call_start";
    /// `call_wait(handle) -> i64`: wait for a started call; returns its [`crate::CallReply`].
    pub const CALL_WAIT: &str = "call_wait";
    /// `call_forget(handle)`: the guest will not wait for this started call.
    pub const CALL_FORGET: &str = "call_forget";
    /// `peers(query_ptr, query_len) -> i64`: returns `Result<Vec<PeerInfo>, CallError>`.
    pub const PEERS: &str = "peers";
    /// `this_peer() -> i64`: returns this peer's [`crate::PeerInfo`].
    pub const THIS_PEER: &str = "this_peer";
    /// `log(level, ptr, len)`: a UTF-8 message logged by the peer at `level` (see [`crate::names::log_level`]).
    pub const LOG: &str = "log";
    /// `panic(ptr, len)`: records the guest's panic message just before it traps.
    pub const PANIC: &str = "panic";
    /// `trigger(ptr, len)`: hands an [`crate::EventTrigger`] to the peer, which delivers it to
    /// the event's subscribers in the background. Returns nothing; never fails the guest.
    pub const TRIGGER: &str = "trigger";
    /// `event_json(name_ptr, name_len) -> i32`: 1 when the event named by the UTF-8 name has
    /// subscribers that take JSON (app-net peers), so the guest adds its value's JSON to the
    /// [`crate::EventTrigger`]; else 0.
    pub const EVENT_JSON: &str = "event_json";
    /// `blob_out(ptr, len, index)`: while the guest encodes a call's arguments or a result,
    /// hands the host blob number `index` of it (from 0 in each value; 0 starts a new value),
    /// the `len` bytes at `ptr`, which the host copies. The next call the guest makes, or the
    /// result of the export it runs, carries the blobs handed over (see [`crate::blob`]).
    pub const BLOB_OUT: &str = "blob_out";
    /// `blob_in(index, len) -> i64`: while the guest decodes a call's arguments or the result
    /// of its last call, blob number `index` of it, of `len` bytes, in a buffer from
    /// `netrun_alloc` (the guest's to free); [`super::NO_BLOB`] when it has no such blob.
    pub const BLOB_IN: &str = "blob_in";
    /// `input(ptr, len)`: copies what the host holds for the guest (an export's arguments, an
    /// import's result returned as `pack(HELD, len)`; see [`super::HELD`]) into the guest's
    /// buffer `[ptr, ptr + len)`, and lets it go. `len` is the length the host gave.
    pub const INPUT: &str = "input";
    /// `output(ptr, len)`: an export's [`crate::Outcome`], the bincode at `[ptr, ptr + len)`,
    /// which the host copies before it returns; the guest then frees its buffer and the export
    /// returns 0. Every export hands its outcome over so, once.
    pub const OUTPUT: &str = "output";
}

/// What [`import::BLOB_IN`] returns when the value being decoded has no such blob.
pub const NO_BLOB: i64 = -1;

/// Levels for [`import::LOG`].
pub mod log_level {
    pub const ERROR: i32 = 0;
    pub const WARN: i32 = 1;
    pub const INFO: i32 = 2;
    pub const DEBUG: i32 = 3;
}

/// Built-in connections every peer answers, whatever its module offers.
pub mod builtin {
    /// Describes the peer: a [`crate::PeerDetails`].
    pub const INFO: &str = "info";
    /// The sorted names of every connection the peer answers.
    pub const CONNECTIONS: &str = "connections";
    /// Returns its single argument unchanged.
    pub const PASS_THROUGH: &str = "pass_through";
    /// Answers the [`crate::names::flag::NULL`] flag.
    pub const NULL: &str = "null";
    /// The peers this peer lists, itself first: a `Vec<PeerInfo>` (what `netrun peers --seed`
    /// asks a seed).
    pub const MEMBERS: &str = "members";
    /// Registers the calling peer's handler for one of this peer's events: a
    /// [`crate::SubscribeRequest`]; answers `true` if it was new.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Removes what [`SUBSCRIBE`] registered (same request); answers `true` if it was there.
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// All built-ins, sorted.
    pub const ALL: [&str; 7] = [
        CONNECTIONS,
        INFO,
        MEMBERS,
        NULL,
        PASS_THROUGH,
        SUBSCRIBE,
        UNSUBSCRIBE,
    ];
}

/// Flags every peer knows.
pub mod flag {
    /// Answered by `null`; the caller's side resolves it to the string `"NULL"`.
    pub const NULL: &str = "NULL";
    /// The peer has no such connection (reported as [`crate::CallError::InvalidConnection`]).
    pub const INVALID_CONNECTION: &str = "INVALID_CONNECTION";
    /// What [`NULL`] resolves to on the caller's side.
    pub const NULL_VALUE: &str = "NULL";
}

/// Packs a guest buffer into the `i64` that crosses the boundary.
pub fn pack(ptr: u32, len: u32) -> i64 {
    ((u64::from(ptr) << 32) | u64::from(len)) as i64
}

/// Splits an `i64` made by [`pack`] into `(ptr, len)`.
pub fn unpack(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_extremes() {
        for (ptr, len) in [(0, 0), (1, 2), (u32::MAX, u32::MAX), (0x8000_0000, 7)] {
            assert_eq!(unpack(pack(ptr, len)), (ptr, len));
        }
    }
}
