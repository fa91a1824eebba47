//! One instance of the module: creating it, running a call in it, and naming what went wrong
//! when the guest trapped.
//!
//! Owns the limits of one call and finding an instance's exports through its
//! [`ExportCache`](crate::guest::exports::ExportCache); it does not know about the network, about which function a name means, or about
//! how many instances a peer has (see [`crate::guest::workers`]).

use std::sync::Arc;
use std::time::Instant;

use netrun_abi::names;
use netrun_abi::{Outcome, TimeoutStage};
use wasmtime::{
    AsContextMut, Caller, Instance, InstancePre, Store, StoreContextMut, TypedFunc, UpdateDeadline,
};

use crate::guest::blobs;
use crate::guest::config::Limits;
use crate::guest::exports::{ExportFunc, GuestExports, export_func};
use crate::guest::scheduler::{GuestFailure, Job};
use crate::guest::state::{Deadline, HostState, InstanceEnv};
use crate::wire::message::ChainId;

/// A live instance (the exports its calls use are in its store's [`ExportCache`]).
///
/// [`ExportCache`]: crate::guest::exports::ExportCache
pub struct Live {
    store: Store<HostState>,
    instance: Instance,
}

/// The buffer exports of the instance a host import was called from: kept in its store once
/// it is initialized, looked up by name while `_initialize` runs.
pub fn buffers_of(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<Arc<GuestExports>> {
    match caller.data().exports.buffers() {
        Some(exports) => Ok(exports.clone()),
        None => Ok(Arc::new(GuestExports::of_caller(caller)?)),
    }
}

/// The `(ptr, len) -> packed` export `name` of the instance a host import was called from,
/// looked up by name the first time only.
pub fn function_of(
    caller: &mut Caller<'_, HostState>,
    name: &str,
) -> wasmtime::Result<Arc<ExportFunc>> {
    if let Some(func) = caller.data().exports.function(name) {
        return Ok(func);
    }
    let func = export_func(caller, name)?;
    Ok(caller.data_mut().exports.keep_function(name, func))
}

/// Creates an instance, running `_initialize` when the module has one.
pub async fn instantiate(pre: &InstancePre<HostState>, env: &InstanceEnv) -> anyhow::Result<Live> {
    let wasm = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    let mut store = Store::new(pre.module().engine(), HostState::new(env)?);
    store.limiter(|state| state as &mut dyn wasmtime::ResourceLimiter);
    store.epoch_deadline_callback(at_epoch_tick);
    // Instantiating and `_initialize` run under the limits of one call.
    arm(&mut store, &env.config.limits, None, Instant::now())?;
    let instance = pre.instantiate_async(&mut store).await.map_err(wasm)?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, names::EXPORT_INITIALIZE) {
        init.call_async(&mut store, ())
            .await
            .map_err(|e| anyhow::anyhow!("_initialize trapped: {e:#}"))?;
    }
    let exports = GuestExports::of_instance(&mut store, &instance).map_err(wasm)?;
    store.data_mut().exports.keep_buffers(exports);
    Ok(Live { store, instance })
}

/// Sets the deadline of one call starting `now` (the peer's limit, or the time the caller
/// gave it if that comes first) and its fuel.
fn arm(
    store: &mut Store<HostState>,
    limits: &Limits,
    caller: Option<Instant>,
    now: Instant,
) -> anyhow::Result<()> {
    store.data_mut().deadline = Deadline::of_call(Some(limits.deadline), caller, now);
    store.set_epoch_deadline(1);
    if let Some(fuel) = limits.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| anyhow::anyhow!("cannot set fuel: {e}"))?;
    }
    Ok(())
}

/// At every epoch tick of running guest code: past the call's deadline, interrupt it (a
/// `deadline` trap); otherwise let the other tasks of this thread run (other workers, the
/// network), then go on. Guest code that never returns thus neither hangs the peer nor keeps
/// other instances from running on a busy machine.
fn at_epoch_tick(store: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    match store.data().deadline {
        Some(deadline) if Instant::now() >= deadline.at => Ok(UpdateDeadline::Interrupt),
        _ => Ok(UpdateDeadline::Yield(1)),
    }
}

impl Live {
    /// Runs `job` as part of `chain`, starting `now`, stopping it at `deadline` (its caller's)
    /// if that comes before the peer's own limit; a trap comes back as the [`GuestFailure`] it
    /// was (the instance is then unusable and must be replaced).
    pub async fn run(
        &mut self,
        job: Job,
        chain: ChainId,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Result<Outcome, GuestFailure> {
        let state = self.store.data_mut();
        state.panic_message = None;
        state.memory_refused = false;
        state.chain.begin(chain);
        let result = self.run_job(job, deadline, now).await;
        let state = self.store.data_mut();
        state.chain.end(&state.scheduler);
        if !state.started.is_empty() {
            tracing::debug!(
                "{} started calls were not waited for; their replies are dropped",
                state.started.len()
            );
            state.started.clear();
        }
        for output in &state.output {
            output.finish_line();
        }
        result.map_err(|error| classify(state, &error))
    }

    async fn run_job(
        &mut self,
        job: Job,
        deadline: Option<Instant>,
        now: Instant,
    ) -> wasmtime::Result<Outcome> {
        let limits = self.store.data().config.limits;
        match job {
            Job::Export {
                export,
                args,
                with_blobs,
            } => {
                arm(&mut self.store, &limits, deadline, now)
                    .map_err(|e| wasmtime::format_err!("{e}"))?;
                let func = self.function(&export)?;
                run_export(&mut self.store, &func, args, with_blobs).await
            }
            Job::Entry { export } => {
                // An entry runs as long as it likes (`netrun run --entry`).
                self.store.data_mut().deadline = None;
                self.store.set_epoch_deadline(1);
                if limits.fuel.is_some() {
                    self.store.set_fuel(u64::MAX)?;
                }
                let func: TypedFunc<(), i64> =
                    self.instance.get_typed_func(&mut self.store, &export)?;
                func.call_async(&mut self.store, ()).await?;
                handed_over(self.store.data_mut())
            }
        }
    }
}

impl Live {
    /// The `(ptr, len) -> packed` export `name`, looked up by name the first time only.
    fn function(&mut self, name: &str) -> wasmtime::Result<Arc<ExportFunc>> {
        if let Some(func) = self.store.data().exports.function(name) {
            return Ok(func);
        }
        let func: ExportFunc = self.instance.get_typed_func(&mut self.store, name)?;
        Ok(self.store.data_mut().exports.keep_function(name, func))
    }
}

/// Runs `func`, an export `(HELD, len) -> 0`, with `args` (a payload with blobs when
/// `with_blobs`: the guest gets the body, and takes the blobs through `net.blob_in`), and
/// returns its outcome with the blobs its result handed over (see [`blobs`]). The arguments
/// are held for the export to take (`net.input`), and it hands its outcome over
/// (`net.output`): see [`crate::guest::handover`].
pub async fn run_export(
    mut ctx: impl AsContextMut<Data = HostState>,
    func: &ExportFunc,
    args: Vec<u8>,
    with_blobs: bool,
) -> wasmtime::Result<Outcome> {
    let mut store = ctx.as_context_mut();
    store.data_mut().blobs.clear_out();
    let args = if with_blobs {
        match store.data_mut().blobs.came(args) {
            Ok(body) => body.to_vec(),
            Err(e) => return Ok(blobs::unreadable("the call's arguments", e)),
        }
    } else {
        args
    };
    let len = store.data_mut().handover.hold(args)?;
    let outcome = func
        .call_async(&mut store, (names::HELD as i32, len as i32))
        .await
        .and_then(|_| handed_over(store.data_mut()));
    let blobs = &mut store.data_mut().blobs;
    blobs.forget_came();
    let out = blobs.take_out();
    Ok(blobs::with_out(outcome?, out))
}

/// The outcome the export that just returned handed over; an export that handed none over is
/// a guest error.
fn handed_over(state: &mut HostState) -> wasmtime::Result<Outcome> {
    state.handover.take_outcome().ok_or_else(|| {
        wasmtime::format_err!(
            "the export returned without handing its outcome over (net.{})",
            names::import::OUTPUT
        )
    })
}

/// Names what went wrong: a nested call's trap that ended this one too, the caller's time
/// running out, an exceeded limit, the guest's panic message when it left one, or the trap.
pub fn classify(state: &mut HostState, error: &wasmtime::Error) -> GuestFailure {
    if let Some(failure) = state.chain.take_nested_failure() {
        return failure;
    }
    let limits = state.config.limits;
    let failure = |kind: &str, message: String| GuestFailure::Trap {
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
        Some(wasmtime::Trap::Interrupt) => match state.deadline {
            Some(deadline) if deadline.from_caller => GuestFailure::TimedOut {
                stage: TimeoutStage::Running,
                after: deadline.started.elapsed(),
            },
            _ => failure("deadline", limits.deadline_exceeded()),
        },
        Some(wasmtime::Trap::OutOfFuel) => failure("fuel", limits.fuel_exhausted()),
        Some(wasmtime::Trap::StackOverflow) => failure("stack overflow", trap_message(error)),
        Some(wasmtime::Trap::MemoryOutOfBounds) if shadow_stack_overflow(error) => failure(
            "stack overflow",
            format!("the guest's stack ran out: {}", trap_message(error)),
        ),
        Some(trap) => failure(&format!("trap: {trap}"), trap_message(error)),
        None => failure("error", trap_message(error)),
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
