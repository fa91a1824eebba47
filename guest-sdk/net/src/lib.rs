//! The netrun guest SDK: write an app as plain Rust functions, compile it to `wasm32-wasip1`,
//! run it on every peer with `netrun app.wasm`.
//!
//! ```no_run
//! #[net::connect]
//! fn greet(name: String) -> String {
//!     format!("hello, {name}")
//! }
//!
//! #[net::entry]
//! fn start() -> Result<(), net::Error> {
//!     let local = greet("me".into()); // a plain Rust call
//!     for peer in net::peer_group("None")? {
//!         let remote = greet::on(&peer, "you".into())?; // runs on `peer`
//!         println!("{local} / {remote}");
//!     }
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - [`connect`], [`entry`], [`event`], [`subscribe`] and [`flag`](macro@flag): the attribute
//!   macros (crate `net-macros`).
//! - [`Flag`]: what a connected function answers instead of a value (module `flags`).
//! - [`Peer`], [`peers`], [`peer_group`], [`this_peer`], [`PeerQuery`] and [`PeerQueryExt`]:
//!   finding and calling peers (module `peer`).
//! - [`Error`]: every way a call can fail, to match on.
//! - [`log`]: messages in the peer's log.
//! - [`Bytes`]: byte payloads that cross the wire as one slice, large ones beside the rest.
//! - `host` (private): the `net` host imports; stubs outside wasm.
//! - `memory` (private): the `netrun_alloc` / `netrun_free` exports, and taking over buffers
//!   the host wrote into.
//! - `__private` (hidden): what generated code calls; not a stable API.
//!
//! # Building an app
//!
//! An app is a library crate with `crate-type = ["cdylib"]` that depends on `net` (and on
//! `serde` for its own types), built with `cargo build --release --target wasm32-wasip1`. The
//! module exports `memory`, `netrun_alloc` and `netrun_free` (defined in this crate), and for
//! each item the macros' exports; it imports only `wasi_snapshot_preview1.*` and `net.*`
//! functions. Outside wasm the crate still builds (for tests and docs), but every call answers
//! a [`Error::Protocol`] saying that the host imports exist only inside a netrun peer.
//!
//! # Names
//!
//! A connected function `f` and its stub module `f` share one name, which Rust allows (a
//! function is a value, a module a type-namespace item). A type or module of your own called
//! `f` in the same scope does clash: rename it, or rename the function and keep the name peers
//! call with a tag, `#[net::connect("f")]`. Two items registered under one name in an app fail
//! to build, with ``symbol `__netrun_fn:NAME` is already defined``.
//!
//! # State and calls
//!
//! A peer runs one instance of the app, and calls into it run one at a time, so statics and
//! `thread_local!` state persist across calls. Do not hold a `RefCell` borrow of such state
//! across an outgoing call (`f::on`, `Peer::call`): a later runtime may serve calls that arrive
//! while this one waits. A panic replaces the instance: its state starts afresh.

mod calls;
mod flags;
mod host;
mod memory;
mod peer;

#[doc(hidden)]
pub mod __private;

/// Makes a function callable by other peers: `#[net::connect]` registers it under its Rust
/// name, `#[net::connect("tag")]` under `tag`.
///
/// The function stays a plain Rust function (calling it runs it here, at no extra cost). The
/// macro adds, next to it:
///
/// - a module of the same name with `on(&peer, args…) -> Result<R, net::Error>`, which runs the
///   function on `peer` and carries the function's type fingerprint, so a peer whose function
///   has other types refuses the call instead of decoding garbage; `spawn(&peer, args…) ->
///   net::Pending<R>`, which starts it there and returns at once; and `any(group, args…) ->
///   Result<net::Served<R>, net::Error>`, which runs it on one live member of `group`;
/// - the exports the runtime calls (`__netrun_fn:NAME` with bincode arguments,
///   `__netrun_json:NAME` with a JSON array of arguments, for `netrun call`);
/// - a record in the module's manifest, shown by `netrun inspect`.
///
/// Parameters and the return type must be owned serde types (`String`, not `&str`); the
/// function cannot be generic, `async`, `unsafe`, or take `self`. Each of these is a compile
/// error pointing at the offending code.
///
/// ```no_run
/// use std::collections::BTreeMap;
///
/// #[net::connect]
/// fn word_count(text: String) -> BTreeMap<String, u32> {
///     let mut counts = BTreeMap::new();
///     for word in text.split_whitespace() {
///         *counts.entry(word.to_string()).or_insert(0) += 1;
///     }
///     counts
/// }
///
/// #[net::connect("ping")]
/// fn answer_ping() -> String {
///     "pong".to_string()
/// }
///
/// # fn main() -> Result<(), net::Error> {
/// let here = word_count("a b a".into()); // local: a plain Rust call
/// assert_eq!(here["a"], 2);
/// for peer in net::peer_group("None")? {
///     let there = word_count::on(&peer, "a b a".into())?; // runs on `peer`
///     let pong = answer_ping::on(&peer)?; // registered as "ping"
///     let same: String = peer.call("ping", ())?; // by name, no contract check
///     assert_eq!((here.clone(), pong), (there, same));
/// }
/// # Ok(())
/// # }
/// ```
pub use net_macros::connect;

/// Makes a function an entry point: `netrun run APP.wasm --entry NAME` serves as a peer and
/// runs it. It takes no parameters and returns `()` or `Result<(), E>` with `E: Display`; an
/// `Err` makes `netrun run` print it and exit with status 1.
///
/// ```no_run
/// #[net::entry]
/// fn hello_everyone() -> Result<(), net::Error> {
///     let me = net::this_peer();
///     for peer in net::peer_group(&me.group)? {
///         println!("{} is in my group", peer.id);
///     }
///     Ok(())
/// }
/// ```
pub use net_macros::entry;

/// Makes a function an event: `#[net::event("name")]`. Calling it runs it here, as a plain
/// Rust call, and hands its return value to every peer subscribed to `name` on this peer; the
/// value is the subscribers' handler arguments (a handler taking one `String` subscribes to an
/// event returning `String`; one taking `(a: u32, b: String)` to an event returning
/// `(u32, String)`).
///
/// Delivery happens in the background, concurrently (at most `NET_THREAD_LIMIT` deliveries at
/// once, 5 by default) and in order for each subscriber. It never blocks the caller and never
/// fails it: a slow, failing or dead subscriber is logged, and one found unreachable is
/// dropped. An event with no subscribers goes nowhere.
///
/// ```no_run
/// #[net::event("price")]
/// fn price_changed(item: String, cents: u64) -> (String, u64) {
///     (item, cents)
/// }
///
/// price_changed("tea".into(), 350); // every subscriber of "price" gets ("tea", 350)
/// ```
pub use net_macros::event;

/// Subscribes a function to an event of other peers:
/// `#[net::subscribe("name", groups = ["g"], hubs_only = true, on_host = true)]`, or with
/// explicit `peers = ["peer id or host:port", …]`. Without filters it subscribes on every peer
/// it finds.
///
/// When the peer starts, its runtime registers the handler on every matching peer whose module
/// declares the event with the type the handler takes, and keeps looking: a matching peer that
/// appears later (a hub started after its subscribers) gets the subscription within a few
/// seconds. Registrations are idempotent, so a subscriber that restarts is not delivered to
/// twice. The handler stays a plain function; its return value is ignored. `netrun info`
/// shows the registrations on both sides.
///
/// ```no_run
/// #[net::subscribe("price", hubs_only = true)]
/// fn on_price(item: String, cents: u64) {
///     println!("{item} now costs {cents}");
/// }
/// ```
pub use net_macros::subscribe;

/// Declares the handler of a flag: `#[net::flag("NAME")]`. When a function this peer calls
/// answers with the flag `NAME` (see [`Flag`]), the handler runs here, on the caller's side,
/// with the function's name and the peer that answered, and what it returns becomes the
/// call's result. Its return type must be the called function's: the call fails with
/// [`Error::FlagHandler`] otherwise. The handler takes `(function: String, peer: net::Peer)`
/// or nothing.
///
/// ```no_run
/// #[net::flag("BUSY")]
/// fn busy(function: String, peer: net::Peer) -> String {
///     format!("{} was busy for {function}", peer.display_name())
/// }
/// ```
pub use net_macros::flag;

pub use flags::Flag;

/// Which peers [`peers`] returns; build it with a struct literal or with [`PeerQueryExt`].
///
/// ```
/// use net::PeerQuery;
/// let query = PeerQuery { on_host: true, ..Default::default() };
/// assert!(query.groups.is_empty()); // empty: every group
/// ```
pub use netrun_abi::PeerQuery;

/// What a peer says about itself (built-in `info`): see [`Peer::info`].
///
/// ```no_run
/// # let peer = net::this_peer();
/// let details: net::PeerDetails = peer.info()?;
/// println!("{} runs netrun {}", details.tag, details.runtime_version);
/// # Ok::<(), net::Error>(())
/// ```
pub use netrun_abi::PeerDetails;

pub use peer::{Peer, PeerQueryExt, peer_group, peers, this_peer};

pub use calls::{Pending, Served, call_any, wait_all};

/// Where a call's time ran out, in [`Error::Timeout`]: connecting (never sent), queued on the
/// peer (never ran), running (stopped), or waiting for the reply.
pub use netrun_abi::TimeoutStage;

/// Why a call failed: unreachable peer (nothing was sent), timeout (naming its
/// [`TimeoutStage`]), outcome unknown (the connection was lost after the call was sent), no
/// such function on the peer (with what it offers), contract mismatch, a remote panic or trap
/// (with its message), bad arguments, frame too large, bad peer id, unknown flag, a flag
/// handler that does not fit the call. [`Error::is_safe_to_retry`] says whether calling again
/// cannot run the function twice.
///
/// ```
/// fn describe(e: &net::Error) -> &'static str {
///     match e {
///         net::Error::PeerUnreachable { .. } => "never sent: try another peer",
///         net::Error::Timeout { stage: net::TimeoutStage::Queued, .. } => "never ran: the peer is busy",
///         net::Error::OutcomeUnknown { .. } => "may have run: check before calling again",
///         net::Error::Remote { .. } => "the function failed over there",
///         _ => "a bug on one side",
///     }
/// }
/// # assert_eq!(describe(&net::Error::Codec { message: String::new() }), "a bug on one side");
/// ```
pub type Error = netrun_abi::CallError;

/// A byte payload that crosses the wire as one slice (a `Vec<u8>` works too, more slowly).
/// One of 64 KiB or more in a call's arguments or result travels beside their encoding: its
/// bytes are copied once out of the sending guest and once into the receiving one, where a
/// `serde_bytes::ByteBuf` is also encoded and decoded on each side (see `netrun_abi::blob`).
/// Elsewhere (an event's value, JSON) it is its bytes, like a `ByteBuf`.
///
/// ```
/// let data = net::Bytes::from(vec![1u8, 2, 3]);
/// assert_eq!(data.len(), 3);
/// assert_eq!(data.into_vec(), [1, 2, 3]);
/// ```
pub type Bytes = netrun_abi::Blob;

/// Messages in the peer's log (stderr of `netrun`), at a level.
///
/// ```
/// net::log::info("cache warmed");
/// ```
pub mod log {
    use netrun_abi::names::log_level;

    /// Logs `message` as an error.
    ///
    /// ```
    /// net::log::error("the cache is corrupt; rebuilding it");
    /// ```
    pub fn error(message: &str) {
        crate::host::log(log_level::ERROR, message);
    }
    /// Logs `message` as a warning.
    ///
    /// ```
    /// net::log::warn("no hub found; working alone");
    /// ```
    pub fn warn(message: &str) {
        crate::host::log(log_level::WARN, message);
    }
    /// Logs `message` as information.
    ///
    /// ```
    /// net::log::info("ready");
    /// ```
    pub fn info(message: &str) {
        crate::host::log(log_level::INFO, message);
    }
    /// Logs `message` for debugging (shown with `NET_DEV` set).
    ///
    /// ```
    /// net::log::debug(&format!("state: {:?}", [1, 2, 3]));
    /// ```
    pub fn debug(message: &str) {
        crate::host::log(log_level::DEBUG, message);
    }
}
