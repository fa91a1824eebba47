//! What an instance knows about the chain of the call it is running ([`ChainState`]).
//!
//! The one owner of the re-entrancy state: which chain runs, whether this instance is
//! registered with the scheduler as running it, the calls of that chain handed to it while it
//! waits on an outgoing call (see [`crate::guest::reentry`]), and the failure of a nested call
//! that ends the outer one. Everything else changes it only through its methods.
//!
//! An instance registers as running its call's chain when that call first sends something out
//! as part of it (a call, a started call, an event): only from then on can a call of the chain
//! arrive that is a callback of this one and must run here. Calls of the chain that arrive
//! before (siblings: calls its caller started together) go to the queue, where another free
//! worker takes them.

use tokio::sync::mpsc;

use crate::guest::scheduler::{GuestFailure, Inbox, Scheduler, Task};
use crate::wire::message::ChainId;

/// What an instance knows about the chain of the call it is running: which chain, whether it
/// is registered as running it, the calls of it that arrive meanwhile, and a nested call's
/// failure. Only this module changes it.
pub struct ChainState {
    /// The chain of the call running now; `None` between calls.
    chain: Option<ChainId>,
    /// Whether this instance is registered as running `chain` (see [`Scheduler::enter`]).
    registered: bool,
    /// Set when a nested call trapped: the outer call fails with the same failure.
    nested_failure: Option<GuestFailure>,
    inbox: Inbox,
    /// The calls of `chain` handed to this instance. Taken while an import waits on them, put
    /// back while a nested call runs (which may wait on them in turn).
    arrivals: Option<mpsc::UnboundedReceiver<Task>>,
}

impl ChainState {
    pub fn new() -> ChainState {
        let (inbox, arrivals) = mpsc::unbounded_channel();
        ChainState {
            chain: None,
            registered: false,
            nested_failure: None,
            inbox,
            arrivals: Some(arrivals),
        }
    }

    /// A call of `chain` starts.
    pub fn begin(&mut self, chain: ChainId) {
        self.chain = Some(chain);
    }

    /// The call running now sends something out as part of its chain (a call, a started call,
    /// an event trigger): from now on until it ends, calls of its chain that arrive are handed
    /// to this instance (unless another one registered first), since they may be callbacks of
    /// what it sent. Returns the chain to send with; `None` between calls.
    pub fn going_out(&mut self, scheduler: &Scheduler) -> Option<ChainId> {
        let chain = self.chain?;
        if !self.registered {
            self.registered = scheduler.enter(chain, &self.inbox);
        }
        Some(chain)
    }

    /// The call is over: calls of its chain go to the queue again, as do those handed to this
    /// instance that it did not get to (if it registered).
    pub fn end(&mut self, scheduler: &Scheduler) {
        let Some(chain) = self.chain.take() else {
            return;
        };
        if !std::mem::take(&mut self.registered) {
            return;
        }
        scheduler.leave(chain);
        if let Some(arrivals) = &mut self.arrivals {
            while let Ok(task) = arrivals.try_recv() {
                scheduler.requeue(task);
            }
        }
    }

    /// A nested call failed with `failure`: so does the call running now, whose instance is
    /// gone.
    pub fn fail_nested(&mut self, failure: GuestFailure) {
        self.nested_failure = Some(failure);
    }

    /// The failure of a nested call that ended the call running now, if one did.
    pub fn take_nested_failure(&mut self) -> Option<GuestFailure> {
        self.nested_failure.take()
    }

    /// The calls of this chain handed to this instance, for an import to wait on; `None` while
    /// an outer import holds them (they come back with [`ChainState::put_back_arrivals`]
    /// before a nested call runs).
    pub fn take_arrivals(&mut self) -> Option<mpsc::UnboundedReceiver<Task>> {
        self.arrivals.take()
    }

    /// Gives back what [`ChainState::take_arrivals`] took.
    pub fn put_back_arrivals(&mut self, arrivals: mpsc::UnboundedReceiver<Task>) {
        self.arrivals = Some(arrivals);
    }
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState::new()
    }
}
