//! The `net` host imports: what guest code may ask of its peer.
//!
//! Owns the guest-facing side of each import: reading the guest's buffers, decoding requests,
//! writing results into buffers the guest allocates. A bad pointer or an undecodable request is
//! a guest bug and traps; a domain failure (unreachable peer, timeout) is returned to the guest
//! as a value it can match on. The work itself is the peer's, through
//! [`PeerServices`](crate::guest::services::PeerServices).
//!
//! Memory ownership: the host reads only `[ptr, ptr + len)` ranges the guest passes in, and
//! writes only into a buffer the guest gives it: one the guest passes to `net.input` to take
//! what the host holds for it (see [`crate::guest::handover`]), or, for a large result, one
//! it obtains from the guest's `netrun_alloc` export, which then belongs to the guest.

use netrun_abi::manifest::Record;
use netrun_abi::names::{self, ExportKind, import, log_level};
use netrun_abi::{
    CallError, CallReply, CallRequest, CallTarget, Contract, EventTrigger, Outcome, PeerInfo,
    PeerQuery, codec, peer_id,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::{Caller, Linker, format_err};

use crate::guest::reentry;
use crate::guest::started::Started;
use crate::guest::state::HostState;
use crate::guest::{exports, handover, instance};
use crate::wire::message::ChainId;

/// Adds every `net` import to `linker`; each is documented at its function.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let module = names::IMPORT_MODULE;
    linker.func_wrap_async(module, import::CALL, |caller, (ptr, len): (i32, i32)| {
        Box::new(call(caller, ptr, len))
    })?;
    linker.func_wrap(module, import::CALL_START, call_start)?;
    linker.func_wrap_async(module, import::CALL_WAIT, |caller, (handle,): (i64,)| {
        Box::new(call_wait(caller, handle))
    })?;
    linker.func_wrap(module, import::CALL_FORGET, call_forget)?;
    linker.func_wrap(module, import::TRIGGER, trigger)?;
    linker.func_wrap(module, import::EVENT_JSON, event_json)?;
    linker.func_wrap_async(module, import::PEERS, |caller, (ptr, len): (i32, i32)| {
        Box::new(peers(caller, ptr, len))
    })?;
    linker.func_wrap_async(module, import::THIS_PEER, |caller, (): ()| {
        Box::new(this_peer(caller))
    })?;
    linker.func_wrap(module, import::LOG, log)?;
    linker.func_wrap(module, import::PANIC, panic)?;
    linker.func_wrap(module, import::BLOB_OUT, blob_out)?;
    linker.func_wrap_async(
        module,
        import::BLOB_IN,
        |caller, (index, len): (i32, i32)| Box::new(blob_in(caller, index, len)),
    )?;
    linker.func_wrap(module, import::INPUT, input)?;
    linker.func_wrap(module, import::OUTPUT, output)?;
    Ok(())
}

/// `net.call(ptr, len) -> i64`: runs the bincode [`CallRequest`] at `[ptr, ptr + len)` on the
/// peer it names (or one live member of the group it names), as part of this instance's
/// chain, within what is left of the running call's time, and waits for its outcome, running
/// the calls of this chain that come back here meanwhile (see [`reentry::wait_serving`]). A
/// flag the module has a handler for is resolved by running the handler here.
///
/// Returns a packed buffer (from `netrun_alloc`, the guest's to free) holding the
/// [`CallReply`]; a failed call is an `Outcome::Error` in it, not a trap. Traps if the buffer
/// is out of bounds or not a `CallRequest`, or if a call run meanwhile (or the flag handler)
/// trapped.
async fn call(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let (request, with_blobs) = read_request(&mut caller, ptr, len, import::CALL)?;
    let called = Called::if_handled(&caller, &request);
    let services = caller.data().services.clone();
    let chain = going_out(&mut caller);
    let reply = services.call(request, with_blobs, chain, time_left(&caller));
    let reply = reentry::wait_serving(&mut caller, reply).await?;
    let reply = match &called {
        Some(called) => resolve_flag(&mut caller, called, reply).await?,
        None => reply,
    };
    write_reply(&mut caller, reply).await
}

/// Reads the [`CallRequest`] at `[ptr, ptr + len)` for `import`, with the blobs the guest
/// handed over while encoding it: its arguments are then a payload with blobs (the second
/// value says so).
fn read_request(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<(CallRequest, bool)> {
    let mut request: CallRequest = read_value(caller, ptr, len, import)?;
    let out = caller.data_mut().blobs.take_out();
    if out.is_empty() || request.json {
        return Ok((request, false));
    }
    request.args = out.finish(&request.args);
    Ok((request, true))
}

/// Hands `reply` to the guest: its value in a buffer, its blobs kept for the guest to take.
async fn write_reply(
    caller: &mut Caller<'_, HostState>,
    mut reply: CallReply,
) -> wasmtime::Result<i64> {
    caller.data_mut().blobs.deliver(&mut reply);
    write_value(caller, &reply).await
}

/// `net.call_start(ptr, len) -> i64`: starts the bincode [`CallRequest`] at `[ptr, ptr + len)`
/// as [`call`] would, without waiting: the host runs it concurrently with the guest and with
/// the other started calls. Returns a handle (a positive number, not a buffer) for
/// `net.call_wait` or `net.call_forget`. Traps if the buffer is out of bounds or not a
/// `CallRequest`.
fn call_start(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let (request, with_blobs) = read_request(&mut caller, ptr, len, import::CALL_START)?;
    let Called {
        target,
        function,
        contract,
        json,
    } = Called::of(&request);
    let (chain, limit) = (going_out(&mut caller), time_left(&caller));
    let services = caller.data().services.clone();
    let reply = tokio::spawn(async move { services.call(request, with_blobs, chain, limit).await });
    let handle = caller.data_mut().started.insert(Started {
        reply,
        target,
        function,
        contract,
        json,
    });
    Ok(handle as i64)
}

/// `net.call_wait(handle) -> i64`: waits for the call `net.call_start` returned `handle` for,
/// running the calls of this chain that come back here meanwhile, and resolves a flag as
/// [`call`] does. Returns a packed buffer (the guest's to free) holding its [`CallReply`].
/// Traps if no started call has that handle (it was never started, or already waited for or
/// forgotten), or if a call run meanwhile (or the flag handler) trapped.
async fn call_wait(mut caller: Caller<'_, HostState>, handle: i64) -> wasmtime::Result<i64> {
    let Some(started) = caller.data_mut().started.take(handle as u64) else {
        return Err(format_err!(
            "net.{}: no started call has handle {handle}",
            import::CALL_WAIT
        ));
    };
    let called = Called {
        target: started.target,
        function: started.function,
        contract: started.contract,
        json: started.json,
    };
    let finished = async {
        started.reply.await.unwrap_or_else(|e| CallReply {
            outcome: Outcome::Error(CallError::Protocol {
                peer: match &called.target {
                    CallTarget::Peer(id) => {
                        peer_id::decode(id).map_or(id.clone(), |a| a.to_string())
                    }
                    CallTarget::AnyOf(group) => format!("any member of group {group}"),
                },
                message: format!("the call's task ended without a reply: {e}"),
            }),
            served_by: None,
        })
    };
    let reply = reentry::wait_serving(&mut caller, finished).await?;
    let reply = resolve_flag(&mut caller, &called, reply).await?;
    write_reply(&mut caller, reply).await
}

/// `net.call_forget(handle)`: the guest will not wait for the call `handle` names; the call
/// runs on, and its reply is dropped. Forgetting a handle that names no started call does
/// nothing.
fn call_forget(mut caller: Caller<'_, HostState>, handle: i64) -> wasmtime::Result<()> {
    caller.data_mut().started.take(handle as u64);
    Ok(())
}

/// What is left of the running call's time, if it has a deadline (an entry has none).
fn time_left(caller: &Caller<'_, HostState>) -> Option<std::time::Duration> {
    caller.data().deadline.map(|deadline| deadline.left())
}

/// `net.trigger(ptr, len)`: hands the bincode [`EventTrigger`] at `[ptr, ptr + len)` to the
/// peer, which delivers its value to the event's subscribers in the background, as part of
/// this instance's chain. Returns at once, and never fails the guest. Traps if the buffer is
/// out of bounds or not an `EventTrigger`.
fn trigger(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let trigger: EventTrigger = read_value(&mut caller, ptr, len, import::TRIGGER)?;
    let chain = going_out(&mut caller);
    let EventTrigger { event, value, json } = trigger;
    caller.data().services.trigger(&event, value, json, chain);
    Ok(())
}

/// The running call's chain, for something it sends out as part of it; calls of the chain
/// that arrive from now on are handed to this instance (see
/// [`ChainState::going_out`](crate::guest::chain::ChainState::going_out)).
fn going_out(caller: &mut Caller<'_, HostState>) -> Option<ChainId> {
    let state = caller.data_mut();
    state.chain.going_out(&state.scheduler)
}

/// `net.event_json(ptr, len) -> i32`: 1 when the event named at `[ptr, ptr + len)` has
/// subscribers that take JSON (app-net peers), else 0. Traps if the buffer is out of bounds.
fn event_json(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    let event = read_text(&mut caller, ptr, len, import::EVENT_JSON)?;
    Ok(i32::from(caller.data().services.event_wants_json(&event)))
}

/// `net.peers(ptr, len) -> i64`: the peers the bincode [`PeerQuery`] at `[ptr, ptr + len)`
/// asks for (discovery). Returns a packed buffer (the guest's to free) holding
/// `Result<Vec<PeerInfo>, CallError>`. Traps if the buffer is out of bounds or not a
/// `PeerQuery`.
async fn peers(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let query: PeerQuery = read_value(&mut caller, ptr, len, import::PEERS)?;
    let services = caller.data().services.clone();
    let found = services.peers(query).await;
    write_value(&mut caller, &found).await
}

/// `net.this_peer() -> i64`: this peer's [`PeerInfo`], in a packed buffer the guest frees.
async fn this_peer(mut caller: Caller<'_, HostState>) -> wasmtime::Result<i64> {
    let services = caller.data().services.clone();
    write_value(&mut caller, services.this_peer()).await
}

/// `net.log(level, ptr, len)`: logs the UTF-8 text at `[ptr, ptr + len)` (invalid UTF-8 is
/// replaced) at `level`, one of [`log_level`] (anything else is debug). Traps if the buffer is
/// out of bounds.
fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let text = read_text(&mut caller, ptr, len, import::LOG)?;
    match level {
        log_level::ERROR => tracing::error!(target: "guest", "{text}"),
        log_level::WARN => tracing::warn!(target: "guest", "{text}"),
        log_level::INFO => tracing::info!(target: "guest", "{text}"),
        _ => tracing::debug!(target: "guest", "{text}"),
    }
    Ok(())
}

/// `net.panic(ptr, len)`: records the guest's panic message at `[ptr, ptr + len)`; the trap
/// that follows carries it to the caller. Traps if the buffer is out of bounds.
fn panic(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let text = read_text(&mut caller, ptr, len, import::PANIC)?;
    caller.data_mut().panic_message = Some(text);
    Ok(())
}

/// `net.blob_out(ptr, len, index)`: copies blob `index` of the value the guest is encoding,
/// the guest buffer `[ptr, ptr + len)`, to go with it (see [`crate::guest::blobs`]). Traps if
/// the buffer is out of bounds, if blobs come out of order, or if the blobs of one value would
/// exceed the instance's memory limit (they cannot all be in its memory then).
fn blob_out(
    mut caller: Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    index: i32,
) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, import::BLOB_OUT, |bytes, state| {
        let limit = state.config.limits.max_memory;
        state
            .blobs
            .hand_over(index as u32, bytes, limit)
            .map_err(|e| format_err!("net.{}: {e}", import::BLOB_OUT))
    })
}

/// `net.blob_in(index, len) -> i64`: blob `index`, of `len` bytes, of the value the guest is
/// decoding, copied into a buffer from `netrun_alloc` (the guest's to free), packed; or
/// [`names::NO_BLOB`] when the value has no such blob. Once the guest has its last blob, the
/// payload is let go.
async fn blob_in(mut caller: Caller<'_, HostState>, index: i32, len: i32) -> wasmtime::Result<i64> {
    let Some(range) = caller.data().blobs.find(index as u32, len as u32 as usize) else {
        return Ok(names::NO_BLOB);
    };
    let len = range.len();
    let (ptr, len) = instance::buffers_of(&mut caller)?
        .give_from(&mut caller, len, |state: &HostState| {
            state.blobs.came_bytes(range)
        })
        .await?;
    caller.data_mut().blobs.taken(index as u32);
    Ok(names::pack(ptr as u32, len as u32))
}

/// `net.input(ptr, len)`: copies the `len` bytes the host holds for the guest (an export's
/// arguments, an import's result returned as `pack(HELD, len)`) into the guest buffer
/// `[ptr, ptr + len)`, sharing the CPU when large, and lets them go. Traps if the host holds
/// nothing, or another length, or if the buffer is out of bounds.
fn input(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, import::INPUT, |to, state| {
        let held = state
            .handover
            .take_held(to.len())
            .map_err(|e| format_err!("net.{}: {e}", import::INPUT))?;
        exports::copy_sharing_cpu(to, &held);
        Ok(())
    })
}

/// `net.output(ptr, len)`: the running export's [`Outcome`], decoded from the guest buffer
/// `[ptr, ptr + len)` where it lies (the guest frees the buffer). Traps if the buffer is out of
/// bounds or not an outcome, or if the export already handed one over.
fn output(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    with_guest_bytes(&mut caller, ptr, len, import::OUTPUT, |bytes, state| {
        let outcome = codec::decode::<Outcome>(bytes)
            .map_err(|e| format_err!("the guest handed over an unreadable outcome: {e}"))?;
        state
            .handover
            .put_outcome(outcome)
            .map_err(|e| format_err!("net.{}: {e}", import::OUTPUT))
    })
}

/// What resolving a flag needs of the call it answered, once the request is gone.
struct Called {
    target: CallTarget,
    function: String,
    contract: Option<Contract>,
    /// A JSON call (of an app-net peer): no flag handler runs for it, since a handler answers
    /// in bincode, which the guest does not read from a JSON call.
    json: bool,
}

impl Called {
    /// What a flag handler would need of `request`, if the module of `caller` has one: for a
    /// module without, the call's names are not copied (three allocations of every call).
    fn if_handled(caller: &Caller<'_, HostState>, request: &CallRequest) -> Option<Called> {
        let handles_flags = !caller.data().config.flags.is_empty();
        handles_flags.then(|| Called::of(request))
    }

    fn of(request: &CallRequest) -> Called {
        Called {
            target: request.target.clone(),
            function: request.function.clone(),
            contract: request.contract.clone(),
            json: request.json,
        }
    }
}

/// When `reply` is a flag the module has a handler for, the handler's answer in its place.
async fn resolve_flag(
    caller: &mut Caller<'_, HostState>,
    called: &Called,
    mut reply: CallReply,
) -> wasmtime::Result<CallReply> {
    let Outcome::Flag(flag) = &reply.outcome else {
        return Ok(reply);
    };
    if called.json {
        return Ok(reply);
    }
    let config = caller.data().config.clone();
    let Some(handler) = config.flags.get(flag) else {
        return Ok(reply);
    };
    let peer = match (&called.target, &reply.served_by) {
        (CallTarget::Peer(id), _) => id.clone(),
        (CallTarget::AnyOf(_), Some(member)) => member.id.clone(),
        // A flag is an answer, so some member gave it.
        (CallTarget::AnyOf(_), None) => return Ok(reply),
    };
    // Boxed, as rare: every call's future would otherwise carry the handler's state.
    reply.outcome = Box::pin(run_flag_handler(caller, &peer, called, handler)).await?;
    Ok(reply)
}

/// Runs the module's handler of the flag `peer` answered a call with, in this instance (the
/// caller's side, as in the original), and answers what it returns. A handler whose return
/// type differs from the called function's (as the caller's contract says) is refused instead
/// of decoded into garbage. A handler that traps traps the call that triggered it.
async fn run_flag_handler(
    caller: &mut Caller<'_, HostState>,
    peer: &str,
    request: &Called,
    handler: &Record,
) -> wasmtime::Result<Outcome> {
    let address = match peer_id::decode(peer) {
        Ok(address) => address,
        Err(e) => return Ok(Outcome::Error(e.into())),
    };
    let display = address.to_string();
    if let Some(contract) = &request.contract {
        let expected = Record::signature_return(&contract.signature);
        if expected != handler.ret {
            return Ok(Outcome::Error(CallError::FlagHandler {
                peer: display,
                function: request.function.clone(),
                flag: handler.name.clone(),
                message: format!(
                    "returns {}, where {} returns {expected}",
                    handler.ret, request.function
                ),
            }));
        }
    }
    let answered_by = PeerInfo {
        id: peer.to_string(),
        host: address.host,
        port: address.port,
        group: address.group,
        hub: false,
        appnet: false,
    };
    let args = codec::encode(&(request.function.as_str(), answered_by))
        .map_err(|e| format_err!("cannot encode a flag handler's arguments: {e}"))?;
    let export = names::export(ExportKind::Flag, &handler.name);
    let func = instance::function_of(caller, &export)?;
    instance::run_export(&mut *caller, &func, args, false).await
}

/// Hands the guest buffer `[ptr, ptr + len)` to `with`, in place (to read, or to write into for
/// `net.input`), with the instance's state; traps if it is out of bounds.
fn with_guest_bytes<T>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
    with: impl FnOnce(&mut [u8], &mut HostState) -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    let memory = instance::buffers_of(caller)?.memory();
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    let (data, state) = memory.data_and_store_mut(caller);
    let bytes = data
        .get_mut(start..start.saturating_add(len))
        .ok_or_else(|| format_err!("net.{import}: buffer {start}+{len} is outside guest memory"))?;
    with(bytes, state)
}

/// The UTF-8 text in the guest buffer `[ptr, ptr + len)` (invalid UTF-8 replaced); traps if
/// it is out of bounds.
fn read_text(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<String> {
    with_guest_bytes(caller, ptr, len, import, |bytes, _| {
        Ok(String::from_utf8_lossy(bytes).into_owned())
    })
}

/// Decodes the guest buffer `[ptr, ptr + len)` where it lies, without copying it first.
fn read_value<T: DeserializeOwned>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<T> {
    with_guest_bytes(caller, ptr, len, import, |bytes, _| {
        codec::decode(bytes)
            .map_err(|e| format_err!("net.{import}: bad request from the guest: {e}"))
    })
}

/// Hands `value`, encoded, to the guest as an import's packed result: held for the guest to
/// take (`pack(HELD, len)`) when small, else encoded straight into a buffer allocated by the
/// guest (see [`handover::HOLD_AT_MOST`]).
async fn write_value<T: Serialize + Sync>(
    caller: &mut Caller<'_, HostState>,
    value: &T,
) -> wasmtime::Result<i64> {
    let size = codec::encoded_len(value)
        .map_err(|e| format_err!("cannot encode a value for the guest: {e}"))?;
    if size <= handover::HOLD_AT_MOST {
        // Into a buffer of the size found above (`codec::encode` would grow one from empty).
        let mut bytes = Vec::with_capacity(size);
        codec::encode_into(value, &mut bytes)
            .map_err(|e| format_err!("cannot encode a value for the guest: {e}"))?;
        let len = caller.data_mut().handover.hold(bytes)?;
        return Ok(names::pack(names::HELD, len));
    }
    let (ptr, len) = instance::buffers_of(caller)?
        .give_encoded(&mut *caller, value)
        .await?;
    Ok(names::pack(ptr as u32, len as u32))
}
