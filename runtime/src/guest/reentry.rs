//! Serving the calls of a chain while the instance waits on that chain's outgoing call.
//!
//! When guest code calls another peer (import `net.call`), its instance is paused inside the
//! import until the reply comes. If the call comes back to this peer as part of the same chain
//! (A → B → A, a call to itself, a cycle through several peers), no other instance may be free
//! to run it, and waiting for this one would deadlock. So the import waits on two things: the
//! reply, and the calls of its chain that arrive for this instance (see
//! [`crate::guest::scheduler`]); it runs the latter nested, through the `Caller`, in the same
//! instance, and goes back to waiting. What the instance knows of its chain is
//! [`ChainState`](crate::guest::chain::ChainState)'s.
//!
//! A nested call runs under what is left of the outer call's limits (deadline, fuel): it is
//! part of that call's work; if the time its own caller gave it ends sooner, that is its
//! deadline. Nested in an entry, which has no deadline, it gets a deadline of its own. If it
//! traps (or its time runs out), its caller gets the failure, and so does the outer call,
//! whose instance is gone.
//!
//! The rule for app authors that follows: guest state may change during any outgoing call
//! (a callback may run in between), so no borrow of it (a `RefCell` borrow, a `&mut` taken
//! from a `thread_local!`) may be held across one.

use std::time::{Duration, Instant};

use wasmtime::Caller;

use crate::guest::instance;
use crate::guest::scheduler::{GuestFailure, Job, Task};
use crate::guest::state::{Deadline, HostState};
use crate::wire::spin;

/// Waits for `reply`, an outgoing call of the instance behind `caller`, running the calls of
/// its chain handed to it meanwhile. Fails (a trap) only if one of those traps. Polls awake
/// for a moment before it sleeps, while this instance's replies come quickly (see
/// [`crate::wire::spin`]).
pub async fn wait_serving<T>(
    caller: &mut Caller<'_, HostState>,
    reply: impl Future<Output = T>,
) -> wasmtime::Result<T> {
    let started = Instant::now();
    let spin = caller.data().recent_replies.spin();
    let result = serve_until(caller, reply, spin).await;
    caller.data_mut().recent_replies.record(started.elapsed());
    result
}

/// What a waiting instance got first: its reply, or a call of its chain to run.
enum Next<T> {
    Reply(T),
    Arrived(Task),
}

/// [`wait_serving`]'s loop, polling awake for up to `spin` before the first sleep.
async fn serve_until<T>(
    caller: &mut Caller<'_, HostState>,
    reply: impl Future<Output = T>,
    mut spin: Duration,
) -> wasmtime::Result<T> {
    let Some(mut arrivals) = caller.data_mut().chain.take_arrivals() else {
        return Ok(spin::spin_then_wait(reply, spin).await);
    };
    tokio::pin!(reply);
    let result = loop {
        let next = spin::spin_then_wait(
            async {
                tokio::select! {
                    biased;
                    outcome = &mut reply => Next::Reply(outcome),
                    Some(task) = arrivals.recv() => Next::Arrived(task),
                }
            },
            std::mem::take(&mut spin),
        )
        .await;
        let task = match next {
            Next::Reply(outcome) => break Ok(outcome),
            Next::Arrived(task) => task,
        };
        caller.data_mut().chain.put_back_arrivals(arrivals);
        // Boxed, as rare: every outgoing call's wait would otherwise carry a nested call's
        // state (docs/performance.md).
        let served = Box::pin(serve_nested(caller, task)).await;
        arrivals = caller
            .data_mut()
            .chain
            .take_arrivals()
            .expect("a nested call puts the arrivals back");
        if let Err(trap) = served {
            break Err(trap);
        }
    };
    caller.data_mut().chain.put_back_arrivals(arrivals);
    result
}

/// Runs one arrived call in the instance behind `caller` and answers it. A trap is answered
/// to the call's caller and returned, to end the outer call too.
async fn serve_nested(caller: &mut Caller<'_, HostState>, mut task: Task) -> wasmtime::Result<()> {
    let now = Instant::now();
    if !task.start(now) {
        // Its time ran out before this instance got to it: it never runs.
        return Ok(());
    }
    let (export, args, with_blobs) = match &mut task.job {
        Job::Export {
            export,
            args,
            with_blobs,
        } => (export.clone(), std::mem::take(args), *with_blobs),
        Job::Entry { .. } => {
            // Entries are never part of a chain; nothing routes one here.
            task.answer(Err(GuestFailure::Trap {
                kind: "error".into(),
                message: "an entry cannot run as a nested call".into(),
            }));
            return Ok(());
        }
    };
    tracing::debug!("running {export} nested, in the instance waiting on its chain");
    // The outer call's deadline, or the nested call's caller's if that comes first. Within an
    // entry, which has no deadline, a nested call gets one of its own.
    let outer_deadline = caller.data().deadline;
    let limit = caller.data().config.limits.deadline;
    caller.data_mut().deadline = match outer_deadline {
        None => Deadline::of_call(Some(limit), task.deadline(), now),
        Some(outer) => Some(outer.or_earlier(task.deadline())),
    };
    let run = async {
        let func = instance::function_of(caller, &export)?;
        instance::run_export(&mut *caller, &func, args, with_blobs).await
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
            caller.data_mut().chain.fail_nested(failure.clone());
            task.answer(Err(failure));
            Err(trap)
        }
    }
}
