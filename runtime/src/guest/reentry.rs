//! Serving the calls of a chain while the instance waits on that chain's outgoing call.
//!
//! When guest code calls another peer (import `net.call`), its instance is paused inside the
//! import until the reply comes. If the call comes back to this peer as part of the same chain
//! (A → B → A, a call to itself, a cycle through several peers), no other instance may be free
//! to run it, and waiting for this one would deadlock. So the import waits on two things: the
//! reply, and the calls of its chain that arrive for this instance (see
//! [`crate::guest::workers::Calls`]); it runs the latter nested, through the `Caller`, in the same
//! instance, and goes back to waiting.
//!
//! A nested call runs under what is left of the outer call's limits (deadline, fuel): it is
//! part of that call's work. Nested in an entry, which has no deadline, it gets a deadline of
//! its own. If it traps, its caller gets the trap, and so does the outer call, whose instance
//! is gone.
//!
//! The rule for app authors that follows: guest state may change during any outgoing call
//! (a callback may run in between), so no borrow of it (a `RefCell` borrow, a `&mut` taken
//! from a `thread_local!`) may be held across one.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use netrun_abi::Outcome;
use tokio::sync::mpsc;
use wasmtime::Caller;

use crate::guest::instance::{self, GuestExports, GuestFailure};
use crate::guest::sandbox::HostState;
use crate::guest::workers::{Inbox, Job, Task};
use crate::wire::message::ChainId;

/// A new chain id: unpredictable to other peers (keyed by process-random SipHash), distinct
/// within this process.
pub fn fresh_chain() -> ChainId {
    static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(std::hash::RandomState::new).build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// What an instance's store knows about the call it is running.
pub struct CallState {
    /// The chain of the call running now; `None` between calls.
    pub chain: Option<ChainId>,
    /// Whether this instance is registered as running `chain` (see
    /// [`crate::guest::workers::Calls::enter`]).
    registered: bool,
    /// Set when a nested call trapped: the outer call fails with the same failure.
    pub nested_failure: Option<GuestFailure>,
    inbox: Inbox,
    /// The calls of `chain` handed to this instance. Taken while an import waits on them, put
    /// back while a nested call runs (which may wait on them in turn).
    arrivals: Option<mpsc::UnboundedReceiver<Task>>,
}

impl CallState {
    pub fn new() -> CallState {
        let (inbox, arrivals) = mpsc::unbounded_channel();
        CallState {
            chain: None,
            registered: false,
            nested_failure: None,
            inbox,
            arrivals: Some(arrivals),
        }
    }
}

impl Default for CallState {
    fn default() -> Self {
        CallState::new()
    }
}

/// The instance owning `state` starts a call of `chain`: calls of that chain arriving from now
/// on are handed to it.
pub fn begin(state: &mut HostState, chain: ChainId) {
    state.calls.chain = Some(chain);
    state.calls.registered = state.peer.calls.enter(chain, &state.calls.inbox);
}

/// The call is over: calls of its chain go to the queue again, as do those handed to this
/// instance that it did not get to.
pub fn end(state: &mut HostState) {
    let Some(chain) = state.calls.chain.take() else {
        return;
    };
    if !std::mem::take(&mut state.calls.registered) {
        return;
    }
    let calls = &state.peer.calls;
    calls.leave(chain);
    if let Some(arrivals) = &mut state.calls.arrivals {
        while let Ok(task) = arrivals.try_recv() {
            calls.requeue(task);
        }
    }
}

/// Waits for `reply`, an outgoing call of the instance behind `caller`, running the calls of
/// its chain handed to it meanwhile. Fails (a trap) only if one of those traps.
pub async fn wait_serving(
    caller: &mut Caller<'_, HostState>,
    reply: impl Future<Output = Outcome>,
) -> wasmtime::Result<Outcome> {
    let Some(mut arrivals) = caller.data_mut().calls.arrivals.take() else {
        return Ok(reply.await);
    };
    tokio::pin!(reply);
    let result = loop {
        let task = tokio::select! {
            biased;
            outcome = &mut reply => break Ok(outcome),
            Some(task) = arrivals.recv() => task,
        };
        caller.data_mut().calls.arrivals = Some(arrivals);
        let served = serve_nested(caller, task).await;
        arrivals = caller
            .data_mut()
            .calls
            .arrivals
            .take()
            .expect("a nested call puts the arrivals back");
        if let Err(trap) = served {
            break Err(trap);
        }
    };
    caller.data_mut().calls.arrivals = Some(arrivals);
    result
}

/// Runs one arrived call in the instance behind `caller` and answers it. A trap is answered
/// to the call's caller and returned, to end the outer call too.
async fn serve_nested(caller: &mut Caller<'_, HostState>, task: Task) -> wasmtime::Result<()> {
    let Job::Export { export, args } = &task.job else {
        // Entries are never part of a chain; nothing routes one here.
        task.answer(Err(GuestFailure {
            kind: "error".into(),
            message: "an entry cannot run as a nested call".into(),
        }));
        return Ok(());
    };
    tracing::debug!("running {export} nested, in the instance waiting on its chain");
    // Within an entry, which has no deadline, a nested call gets one of its own.
    let outer_deadline = caller.data().deadline;
    if outer_deadline.is_none() {
        let limit = caller.data().peer.limits.deadline;
        caller.data_mut().deadline = Some(Instant::now() + limit);
    }
    let run = async {
        let func = instance::export_func(caller, export)?;
        GuestExports::of_caller(caller)?
            .call(&mut *caller, func, args)
            .await
    };
    let result = run.await;
    caller.data_mut().deadline = outer_deadline;
    match result {
        Ok(outcome) => {
            task.answer(Ok(outcome));
            Ok(())
        }
        Err(trap) => {
            let failure = instance::classify(caller.data_mut(), &trap);
            caller.data_mut().calls.nested_failure = Some(failure.clone());
            task.answer(Err(failure));
            Err(trap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_chains_differ() {
        let chains: std::collections::HashSet<ChainId> = (0..1000).map(|_| fresh_chain()).collect();
        assert_eq!(chains.len(), 1000);
    }
}
