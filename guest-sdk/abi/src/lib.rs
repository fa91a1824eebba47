//! The netrun guest ABI: everything the host (`netrun`) and the guest SDK (`net`) must agree on.
//!
//! This crate is the single place that spells the ABI's names and numbers: the import module,
//! the export name prefixes, the ABI version, the manifest section and its record format, the
//! bincode configuration, and the types that cross the host/guest boundary. Both sides depend
//! on it, so they cannot drift apart. It must not contain host-only or guest-only code.
//!
//! # Layout
//!
//! - [`names`]: import module, import names, export names and prefixes, ABI version.
//! - [`codec`]: the one bincode configuration; nothing else touches bincode.
//! - [`blob`]: [`Blob`], bytes that travel beside the value that holds them, and the layout
//!   of a payload that carries them.
//! - [`manifest`]: the custom section that lists what a module offers, and type fingerprints.
//! - [`peer_id`]: peer ids, base64 of `"host:port -> group"` as in the original app-net.
//! - [`types`]: requests, outcomes, peer descriptions and the caller-visible [`CallError`].
//!
//! # Calling convention (ABI version 5: buffers held by the host)
//!
//! All pointers and lengths are `i32` offsets into the guest's exported `memory`. A buffer
//! handed across the boundary is returned packed in one `i64` by [`names::pack`]:
//! `ptr << 32 | len`.
//!
//! - The guest exports `netrun_alloc(len) -> ptr` and `netrun_free(ptr, len)`. The host writes
//!   into guest memory only inside a buffer the guest gives it: one passed to the `input`
//!   import, or one obtained from `netrun_alloc`; it writes all of it before handing it on (so
//!   the guest need not zero it).
//! - A connected function `NAME` is exported as `__netrun_fn:NAME(ptr, len) -> i64` (bincode
//!   arguments, the tuple of the parameters) and `__netrun_json:NAME(ptr, len) -> i64` (a JSON
//!   array of the arguments). The host calls it with `ptr` [`names::HELD`]: it holds the `len`
//!   bytes of arguments, and the export first takes them into a buffer of its own with the
//!   `input` import. It hands its encoded [`Outcome`] to the `output` import (which copies it
//!   before returning; the guest then frees it) and returns 0. No entry into the guest but the
//!   export itself.
//! - An entry point `NAME` is exported as `__netrun_entry:NAME() -> i64`, handing its outcome
//!   over the same way.
//! - A subscription handler is exported as `__netrun_sub:RUST_NAME(ptr, len) -> i64` and a
//!   flag handler as `__netrun_flag:FLAG(ptr, len) -> i64`, both bincode, same convention; a
//!   subscription handler also as `__netrun_subjson:RUST_NAME(ptr, len) -> i64` (a JSON array
//!   of its arguments: events from app-net peers).
//!   Events have no export: the guest hands their values to the `trigger` import, with their
//!   JSON too when the `event_json` import says an app-net peer subscribes.
//! - A call (`call` import) of an app-net peer answered `CallError::AppNetPeer` is made again
//!   with `CallRequest::json`: a JSON array of the arguments, a JSON result.
//! - Host imports live in module [`names::IMPORT_MODULE`]; those that return data return a
//!   packed buffer: `pack(HELD, len)` when the host holds it (up to 4 KiB), which the guest
//!   takes at once with `input`; otherwise a buffer the host allocated with `netrun_alloc`,
//!   which the guest owns and frees.
//! - `call` takes a [`CallRequest`] (to a peer, or to any member of a group) and returns a
//!   [`CallReply`]; `call_start` takes the same request and returns a handle (a plain `i64`),
//!   which `call_wait` turns into the [`CallReply`] and `call_forget` gives up.
//! - Blobs: while the guest encodes a request or a result, each large [`Blob`] in it is handed
//!   to `blob_out` (the host copies it) and only its length is encoded; the request the guest
//!   passes to `call` next, or the outcome its export returns, carries them. While the guest
//!   decodes its arguments or a reply's value, each blob that travelled beside it is asked
//!   for from `blob_in`, which copies it into a buffer of its own. The host never decodes a
//!   value: it only moves the blobs with it (see [`blob`]).

pub mod blob;
pub mod codec;
pub mod manifest;
pub mod names;
pub mod peer_id;
pub mod types;

pub use blob::Blob;
pub use types::{
    CallError, CallReply, CallReplyRef, CallRequest, CallTarget, CallTargetRef, Contract,
    ContractRef, EventTrigger, Outcome, OutcomeRef, PeerDetails, PeerInfo, PeerQuery,
    SubscribeRequest, SubscriptionInfo, TimeoutStage,
};
