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
use wasmtime::{Instance, InstancePre, Memory, Store, TypedFunc};

use crate::peer::PeerContext;
use crate::sandbox::HostState;

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
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
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
    let mut store = Store::new(pre.module().engine(), HostState::new(peer.clone()));
    let instance = pre.instantiate_async(&mut store).await.map_err(wasm)?;
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, names::EXPORT_INITIALIZE) {
        init.call_async(&mut store, ())
            .await
            .map_err(|e| anyhow::anyhow!("_initialize trapped: {e:#}"))?;
    }
    let memory = instance
        .get_memory(&mut store, names::EXPORT_MEMORY)
        .ok_or_else(|| anyhow::anyhow!("the module exports no memory"))?;
    let alloc = instance
        .get_typed_func(&mut store, names::EXPORT_ALLOC)
        .map_err(wasm)?;
    let free = instance
        .get_typed_func(&mut store, names::EXPORT_FREE)
        .map_err(wasm)?;
    Ok(Live {
        store,
        instance,
        memory,
        alloc,
        free,
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

async fn run_job(live: &mut Live, job: Job) -> wasmtime::Result<Outcome> {
    live.store.data_mut().panic_message = None;
    let packed = match job {
        Job::Export { export, args } => {
            let func: TypedFunc<(i32, i32), i64> =
                live.instance.get_typed_func(&mut live.store, &export)?;
            let len = i32::try_from(args.len()).map_err(|_| {
                wasmtime::format_err!("arguments of {} bytes do not fit guest memory", args.len())
            })?;
            let ptr = live.alloc.call_async(&mut live.store, len).await?;
            live.memory
                .write(&mut live.store, ptr as u32 as usize, &args)?;
            func.call_async(&mut live.store, (ptr, len)).await?
        }
        Job::Entry { export } => {
            let func: TypedFunc<(), i64> =
                live.instance.get_typed_func(&mut live.store, &export)?;
            func.call_async(&mut live.store, ()).await?
        }
    };
    let (ptr, len) = names::unpack(packed);
    let mut bytes = vec![0; len as usize];
    live.memory.read(&live.store, ptr as usize, &mut bytes)?;
    live.free
        .call_async(&mut live.store, (ptr as i32, len as i32))
        .await?;
    codec::decode::<Outcome>(&bytes)
        .map_err(|e| wasmtime::format_err!("the guest returned an unreadable outcome: {e}"))
}

/// Names what went wrong: the guest's panic message when it left one, else the trap.
fn classify(live: &mut Live, error: wasmtime::Error) -> GuestFailure {
    if let Some(message) = live.store.data_mut().panic_message.take() {
        return GuestFailure {
            kind: "panic".into(),
            message,
        };
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => GuestFailure {
            kind: format!("trap: {trap}"),
            message: format!("{error:#}"),
        },
        None => GuestFailure {
            kind: "error".into(),
            message: format!("{error:#}"),
        },
    }
}
