//! The calls a guest started without waiting (`net.call_start`): a table from the handle the
//! guest holds to the host task running the call, until the guest waits for it
//! (`net.call_wait`) or forgets it (`net.call_forget`).
//!
//! A started call runs to its end whether or not anyone waits: forgetting it, or ending the
//! guest's call without waiting, only drops its reply. The table belongs to one instance.

use std::collections::HashMap;

use netrun_abi::{CallReply, CallTarget, Contract};
use tokio::task::JoinHandle;

/// One started call: its task, and what resolving a flag in its reply needs.
pub struct Started {
    pub reply: JoinHandle<CallReply>,
    pub target: CallTarget,
    pub function: String,
    pub contract: Option<Contract>,
    /// A JSON call (of an app-net peer): no flag handler runs for its answer.
    pub json: bool,
}

/// The calls an instance started and has not waited for, by handle.
#[derive(Default)]
pub struct StartedCalls {
    next: u64,
    calls: HashMap<u64, Started>,
}

impl StartedCalls {
    /// Keeps `started`; returns its handle (never 0, never reused by this instance).
    pub fn insert(&mut self, started: Started) -> u64 {
        self.next += 1;
        self.calls.insert(self.next, started);
        self.next
    }

    /// The call of `handle`, for waiting on; `None` if there is none (never started, or
    /// already waited for or forgotten).
    pub fn take(&mut self, handle: u64) -> Option<Started> {
        self.calls.remove(&handle)
    }

    /// How many calls are started and not yet waited for.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is waiting to be waited for.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Drops every call (the guest's call ended without waiting for them); they run on.
    pub fn clear(&mut self) {
        self.calls.clear();
    }
}
