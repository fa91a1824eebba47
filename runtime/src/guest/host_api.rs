//! The `net` host imports: what guest code may ask of its peer.
//!
//! Owns the guest-facing side of each import: reading the guest's buffers, decoding requests,
//! writing results into buffers the guest allocates. A bad pointer or an undecodable request is
//! a guest bug and traps; a domain failure (unreachable peer, timeout) is returned to the guest
//! as a value it can match on. The work itself is [`PeerContext`](crate::peer::PeerContext)'s.
//!
//! Memory ownership: the host reads only `[ptr, ptr + len)` ranges the guest passes in, and
//! writes only into a buffer it obtains from the guest's `netrun_alloc` export; that buffer
//! then belongs to the guest, which frees it.

use netrun_abi::manifest::Record;
use netrun_abi::names::{self, ExportKind, import, log_level};
use netrun_abi::{
    CallError, CallRequest, Contract, EventTrigger, Outcome, PeerInfo, PeerQuery, codec, peer_id,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::{Caller, Linker, format_err};

use crate::guest::instance::{self, GuestExports};
use crate::guest::reentry;
use crate::guest::sandbox::HostState;

/// Adds every `net` import to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    // `call(req_ptr, req_len) -> packed Outcome`: runs a `CallRequest` on the peer it names and
    // waits for the outcome, running the calls of this chain that come back here meanwhile; a
    // flag the module has a handler for is resolved by running the handler here. Traps if the
    // buffer is out of bounds or not a `CallRequest`, or if a call run meanwhile trapped.
    linker.func_wrap_async(
        names::IMPORT_MODULE,
        import::CALL,
        |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let request: CallRequest = read_value(&mut caller, ptr, len, import::CALL)?;
                let peer = caller.data().peer.clone();
                // What a flag handler needs once the request is gone.
                let called = Called {
                    peer: request.peer.clone(),
                    function: request.function.clone(),
                    contract: request.contract.clone(),
                };
                let reply = peer.call_from_guest(request, caller.data().calls.chain);
                let outcome = match reentry::wait_serving(&mut caller, reply).await? {
                    Outcome::Flag(flag) => match peer.flags.get(&flag) {
                        Some(handler) => run_flag_handler(&mut caller, &called, handler).await?,
                        None => Outcome::Flag(flag),
                    },
                    other => other,
                };
                write_value(&mut caller, &outcome).await
            })
        },
    )?;
    // `trigger(ptr, len)`: hands an `EventTrigger` to the peer's event delivery; returns at
    // once. Traps if the buffer is out of bounds or not an `EventTrigger`.
    linker.func_wrap(
        names::IMPORT_MODULE,
        import::TRIGGER,
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
            let trigger: EventTrigger = read_value(&mut caller, ptr, len, import::TRIGGER)?;
            let state = caller.data();
            state
                .peer
                .events
                .trigger(&trigger.event, trigger.value, state.calls.chain);
            Ok(())
        },
    )?;
    // `peers(query_ptr, query_len) -> packed Result<Vec<PeerInfo>, CallError>`: discovery.
    linker.func_wrap_async(
        names::IMPORT_MODULE,
        import::PEERS,
        |mut caller: Caller<'_, HostState>, (ptr, len): (i32, i32)| {
            Box::new(async move {
                let query: PeerQuery = read_value(&mut caller, ptr, len, import::PEERS)?;
                let peer = caller.data().peer.clone();
                let found = peer.peers(&query).await;
                write_value(&mut caller, &found).await
            })
        },
    )?;
    // `this_peer() -> packed PeerInfo`.
    linker.func_wrap_async(
        names::IMPORT_MODULE,
        import::THIS_PEER,
        |mut caller: Caller<'_, HostState>, (): ()| {
            Box::new(async move {
                let me = caller.data().peer.me.clone();
                write_value(&mut caller, &me).await
            })
        },
    )?;
    // `log(level, ptr, len)`: logs a UTF-8 message (lossy) at `level`. Traps on a bad buffer.
    linker.func_wrap(
        names::IMPORT_MODULE,
        import::LOG,
        |mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            let text = String::from_utf8_lossy(&read_bytes(&mut caller, ptr, len, import::LOG)?)
                .into_owned();
            match level {
                log_level::ERROR => tracing::error!(target: "guest", "{text}"),
                log_level::WARN => tracing::warn!(target: "guest", "{text}"),
                log_level::INFO => tracing::info!(target: "guest", "{text}"),
                _ => tracing::debug!(target: "guest", "{text}"),
            }
            Ok(())
        },
    )?;
    // `panic(ptr, len)`: records the guest's panic message; the trap that follows carries it.
    linker.func_wrap(
        names::IMPORT_MODULE,
        import::PANIC,
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
            let text = String::from_utf8_lossy(&read_bytes(&mut caller, ptr, len, import::PANIC)?)
                .into_owned();
            caller.data_mut().panic_message = Some(text);
            Ok(())
        },
    )?;
    Ok(())
}

/// The call a flag answered.
struct Called {
    peer: String,
    function: String,
    contract: Option<Contract>,
}

/// Runs the module's handler of the flag a call was answered with, in this instance (the
/// caller's side, as in the original), and answers what it returns. A handler whose return
/// type differs from the called function's (as the caller's contract says) is refused instead
/// of decoded into garbage. A handler that traps traps the call that triggered it.
async fn run_flag_handler(
    caller: &mut Caller<'_, HostState>,
    request: &Called,
    handler: &Record,
) -> wasmtime::Result<Outcome> {
    let address = match peer_id::decode(&request.peer) {
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
        id: request.peer.clone(),
        host: address.host,
        port: address.port,
        group: address.group,
        hub: false,
    };
    let args = codec::encode(&(request.function.as_str(), answered_by))
        .map_err(|e| format_err!("cannot encode a flag handler's arguments: {e}"))?;
    let export = names::export(ExportKind::Flag, &handler.name);
    let func = instance::export_func(caller, &export)?;
    GuestExports::of_caller(caller)?
        .call(&mut *caller, func, &args)
        .await
}

/// Copies the guest buffer `[ptr, ptr + len)`; traps if it is out of bounds.
fn read_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<Vec<u8>> {
    let memory = instance::memory_of(caller)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    memory
        .data(&caller)
        .get(start..start.saturating_add(len))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format_err!("net.{import}: buffer {start}+{len} is outside guest memory"))
}

fn read_value<T: DeserializeOwned>(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<T> {
    let bytes = read_bytes(caller, ptr, len, import)?;
    codec::decode(&bytes).map_err(|e| format_err!("net.{import}: bad request from the guest: {e}"))
}

/// Encodes `value` into a buffer allocated by the guest and returns it packed.
async fn write_value<T: Serialize>(
    caller: &mut Caller<'_, HostState>,
    value: &T,
) -> wasmtime::Result<i64> {
    let bytes = codec::encode(value).map_err(|e| format_err!("cannot encode a reply: {e}"))?;
    write_bytes(caller, &bytes).await
}

/// Copies `bytes` into a fresh guest buffer from `netrun_alloc`; returns it packed.
async fn write_bytes(caller: &mut Caller<'_, HostState>, bytes: &[u8]) -> wasmtime::Result<i64> {
    let (ptr, len) = GuestExports::of_caller(caller)?
        .give(&mut *caller, bytes)
        .await?;
    Ok(names::pack(ptr as u32, len as u32))
}
