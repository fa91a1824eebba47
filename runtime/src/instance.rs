//! The peer's instance of the module, and the queue of calls into it.
//!
//! One task owns the instance (its wasmtime `Store`); calls reach it through an
//! [`InstanceHandle`] and run one at a time, so the guest's state persists across calls like
//! one running process. A trap (panic, `unreachable`, out-of-bounds…) becomes a
//! [`GuestFailure`] and the instance is replaced by a fresh one, which the log says.
//!
//! Owns the call convention of the exports (buffers in, packed buffer out); it does not know
//! about the network or about which function a name means.

use std::sync::Arc;

use netrun_abi::names;
use netrun_abi::{Outcome, codec};
use tokio::sync::{mpsc, oneshot};
use wasmtime::{AsContextMut, Caller, Instance, InstancePre, Memory, Store, TypedFunc};

use crate::peer::PeerContext;
use crate::sandbox::{HostState, Limits};

/// Calls waiting for the instance.
const QUEUE: usize = 1024;

/// What to run in the instance.
#[derive(Debug)]
pub enum Job {
    /// A function export `(ptr, len) -> i64` with these argument bytes.
    Export { export: String, args: Vec<u8> },
    /// An entry export `() -> i64`.
    Entry { export: String },
}

/// Why a job did not produce an [`Outcome`]: the guest trapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFailure {
    /// `panic`, or `trap: <what>`.
    pub kind: String,
    pub message: String,
}

type Reply = oneshot::Sender<Result<Outcome, GuestFailure>>;

/// Sends jobs to the instance task. Cheap to clone.
#[derive(Clone)]
pub struct InstanceHandle {
    tx: mpsc::Sender<(Job, Reply)>,
}

impl InstanceHandle {
    /// Runs `job` once the instance is free and returns what it produced.
    pub async fn run(&self, job: Job) -> Result<Outcome, GuestFailure> {
        let (reply, answer) = oneshot::channel();
        let stopped = || GuestFailure {
            kind: "unavailable".into(),
            message: "the peer's instance has stopped".into(),
        };
        self.tx.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A live instance and the exports every call uses.
struct Live {
    store: Store<HostState>,
    instance: Instance,
    exports: GuestExports,
}

/// An export with the call convention of functions and handlers: `(ptr, len) -> packed`.
pub type ExportFunc = TypedFunc<(i32, i32), i64>;

/// The exports through which buffers cross into and out of an instance.
#[derive(Clone)]
pub struct GuestExports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
}

impl GuestExports {
    fn of_instance(store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self> {
        Ok(GuestExports {
            memory: instance
                .get_memory(&mut *store, names::EXPORT_MEMORY)
                .ok_or_else(|| wasmtime::format_err!("the module exports no memory"))?,
            alloc: instance.get_typed_func(&mut *store, names::EXPORT_ALLOC)?,
            free: instance.get_typed_func(&mut *store, names::EXPORT_FREE)?,
        })
    }

    /// The exports of the instance a host import was called from.
    pub fn of_caller(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Self> {
        Ok(GuestExports {
            memory: memory_of(caller)?,
            alloc: export_func(caller, names::EXPORT_ALLOC)?,
            free: export_func(caller, names::EXPORT_FREE)?,
        })
    }

    /// Copies `bytes` into a fresh guest buffer from `netrun_alloc`; returns `(ptr, len)`.
    /// The buffer then belongs to the guest.
    pub async fn give(
        &self,
        mut ctx: impl AsContextMut<Data = HostState>,
        bytes: &[u8],
    ) -> wasmtime::Result<(i32, i32)> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| wasmtime::format_err!("{} bytes do not fit guest memory", bytes.len()))?;
        let ptr = self.alloc.call_async(&mut ctx, len).await?;
        self.memory
            .write(&mut ctx, ptr as u32 as usize, bytes)
            .map_err(|_| {
                wasmtime::format_err!(
                    "{} returned a buffer outside guest memory",
                    names::EXPORT_ALLOC
                )
            })?;
        Ok((ptr, len))
    }

    /// Calls `func`, a `(ptr, len) -> i64` export, with `args` copied into a fresh guest
    /// buffer, and returns the outcome it answers.
    pub async fn call(
        &self,
        mut ctx: impl AsContextMut<Data = HostState>,
        func: ExportFunc,
        args: &[u8],
    ) -> wasmtime::Result<Outcome> {
        let (ptr, len) = self.give(&mut ctx, args).await?;
        let packed = func.call_async(&mut ctx, (ptr, len)).await?;
        self.read_outcome(ctx, packed).await
    }

    /// Reads and frees the outcome buffer an export returned.
    async fn read_outcome(
        &self,
        mut ctx: impl AsContextMut<Data = HostState>,
        packed: i64,
    ) -> wasmtime::Result<Outcome> {
        let (ptr, len) = names::unpack(packed);
        let mut bytes = vec![0; len as usize];
        self.memory.read(&ctx, ptr as usize, &mut bytes)?;
        self.free
            .call_async(&mut ctx, (ptr as i32, len as i32))
            .await?;
        codec::decode::<Outcome>(&bytes)
            .map_err(|e| wasmtime::format_err!("the guest returned an unreadable outcome: {e}"))
    }
}

/// The memory of the instance a host import was called from.
pub fn memory_of(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    caller
        .get_export(names::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| {
            wasmtime::format_err!(
                "the module exports no memory named {:?}",
                names::EXPORT_MEMORY
            )
        })
}

/// The export `name` of the instance a host import was called from, as a typed function.
pub fn export_func<Params: wasmtime::WasmParams, Results: wasmtime::WasmResults>(
    caller: &mut Caller<'_, HostState>,
    name: &str,
) -> wasmtime::Result<TypedFunc<Params, Results>> {
    caller
        .get_export(name)
        .and_then(|e| e.into_func())
        .ok_or_else(|| wasmtime::format_err!("the module exports no function {name:?}"))?
        .typed(&*caller)
}

/// Creates the instance (running `_initialize` when present) and starts its task.
pub async fn start(
    pre: InstancePre<HostState>,
    peer: Arc<PeerContext>,
) -> anyhow::Result<InstanceHandle> {
    let live = instantiate(&pre, &peer).await?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(serve(pre, peer, live, rx));
    Ok(InstanceHandle { tx })
}

async fn instantiate(
    pre: &InstancePre<HostState>,
    peer: &Arc<PeerContext>,
) -> anyhow::Result<Live> {
    let wasm = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    let mut store = Store::new(pre.module().engine(), HostState::new(peer.clone())?);
    store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
    // Instantiating and `_initialize` run under the limits of one call.
    arm(&mut store, &peer.limits)?;
    let instance = pre.instantiate_async(&mut store).await.map_err(wasm)?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, names::EXPORT_INITIALIZE) {
        init.call_async(&mut store, ())
            .await
            .map_err(|e| anyhow::anyhow!("_initialize trapped: {e:#}"))?;
    }
    let exports = GuestExports::of_instance(&mut store, &instance).map_err(wasm)?;
    Ok(Live {
        store,
        instance,
        exports,
    })
}

async fn serve(
    pre: InstancePre<HostState>,
    peer: Arc<PeerContext>,
    mut live: Live,
    mut jobs: mpsc::Receiver<(Job, Reply)>,
) {
    while let Some((job, reply)) = jobs.recv().await {
        let what = match &job {
            Job::Export { export, .. } | Job::Entry { export } => export.clone(),
        };
        let result = run_job(&mut live, job).await;
        let result = match result {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                let failure = classify(&mut live, error);
                tracing::warn!(
                    "{what} trapped ({}: {}); replacing the instance: its state was reset",
                    failure.kind,
                    failure.message
                );
                match instantiate(&pre, &peer).await {
                    Ok(fresh) => live = fresh,
                    Err(e) => tracing::error!("cannot create a fresh instance: {e:#}"),
                }
                Err(failure)
            }
        };
        let _ = reply.send(result);
    }
}

/// Sets the deadline and the fuel of one call.
fn arm(store: &mut Store<HostState>, limits: &Limits) -> anyhow::Result<()> {
    store.set_epoch_deadline(limits.deadline_ticks());
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| anyhow::anyhow!("cannot set fuel: {e}"))?;
    }
    Ok(())
}

/// Far enough never to come: an entry runs as long as it likes (`netrun run --entry`).
const NO_DEADLINE: u64 = 1 << 62;

async fn run_job(live: &mut Live, job: Job) -> wasmtime::Result<Outcome> {
    let state = live.store.data_mut();
    state.panic_message = None;
    state.memory_refused = false;
    let limits = state.peer.limits;
    match job {
        Job::Export { export, args } => {
            arm(&mut live.store, &limits).map_err(|e| wasmtime::format_err!("{e}"))?;
            let func = live.instance.get_typed_func(&mut live.store, &export)?;
            live.exports.call(&mut live.store, func, &args).await
        }
        Job::Entry { export } => {
            live.store.set_epoch_deadline(NO_DEADLINE);
            if limits.fuel.is_some() {
                live.store.set_fuel(u64::MAX)?;
            }
            let func: TypedFunc<(), i64> =
                live.instance.get_typed_func(&mut live.store, &export)?;
            let packed = func.call_async(&mut live.store, ()).await?;
            live.exports.read_outcome(&mut live.store, packed).await
        }
    }
}

/// Names what went wrong: an exceeded limit, the guest's panic message when it left one, or
/// the trap.
fn classify(live: &mut Live, error: wasmtime::Error) -> GuestFailure {
    let state = live.store.data_mut();
    let limits = state.peer.limits;
    let failure = |kind: &str, message: String| GuestFailure {
        kind: kind.into(),
        message,
    };
    if std::mem::take(&mut state.memory_refused) {
        return failure("memory limit", limits.memory_exceeded());
    }
    if let Some(message) = state.panic_message.take() {
        return failure("panic", message);
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => failure("deadline", limits.deadline_exceeded()),
        Some(wasmtime::Trap::OutOfFuel) => failure("fuel", limits.fuel_exhausted()),
        Some(wasmtime::Trap::StackOverflow) => failure("stack overflow", trap_message(&error)),
        Some(wasmtime::Trap::MemoryOutOfBounds) if shadow_stack_overflow(&error) => failure(
            "stack overflow",
            format!("the guest's stack ran out: {}", trap_message(&error)),
        ),
        Some(trap) => failure(&format!("trap: {trap}"), trap_message(&error)),
        None => failure("error", trap_message(&error)),
    }
}

/// The error's chain without the wasm backtrace (which goes to the log, not to callers).
fn trap_message(error: &wasmtime::Error) -> String {
    tracing::debug!("guest trap: {error:?}");
    error
        .chain()
        .map(ToString::to_string)
        .filter(|part| !part.starts_with("error while executing at wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Rust (and C) guests keep their stack in linear memory, growing down from a fixed size; when
/// it runs out the stack pointer wraps below zero and the next access faults just under 4 GiB
/// (or just over it, with an offset). That fault is the guest's stack overflow.
fn shadow_stack_overflow(error: &wasmtime::Error) -> bool {
    const MARK: &str = "memory fault at wasm address 0x";
    error.chain().any(|part| {
        let text = part.to_string();
        let Some(at) = text.find(MARK) else {
            return false;
        };
        let hex: String = text[at + MARK.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        u64::from_str_radix(&hex, 16).is_ok_and(|address| address >= 0xFFFF_0000)
    })
}
