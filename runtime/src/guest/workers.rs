//! The peer's instances (its workers) and the queue of calls into them.
//!
//! Each worker is a task that owns one instance (its wasmtime `Store`) and runs one call at a
//! time. Calls wait in one queue that idle workers take from, so with `--workers N` up to N
//! calls run in parallel; with one worker (the default) calls run one after another and the
//! guest's state persists across them like one running process.
//!
//! Every call belongs to a call chain ([`ChainId`]): the chain of the call that caused it, or
//! a fresh one. While a worker runs a call of chain C, it is registered here as running C, and
//! calls of chain C that arrive are handed to it rather than queued; it runs them the next
//! time it waits on an outgoing call (see [`crate::guest::reentry`]). That is how A → B → A
//! callbacks and self-calls run instead of deadlocking, and why a callback sees the state of
//! the call it belongs to. What is still in its hands when its call ends goes back to the
//! queue.
//!
//! A worker whose instance traps replaces it with a fresh one, which the log says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use netrun_abi::Outcome;
use tokio::sync::{mpsc, oneshot};
use wasmtime::InstancePre;

use crate::guest::instance::{self, GuestFailure, Live};
use crate::guest::reentry;
use crate::guest::sandbox::HostState;
use crate::peer::PeerContext;
use crate::wire::message::ChainId;

/// Calls waiting for a free worker before callers wait to queue theirs.
const QUEUE: usize = 1024;

/// What to run in an instance.
#[derive(Debug)]
pub enum Job {
    /// A function export `(ptr, len) -> i64` with these argument bytes.
    Export { export: String, args: Vec<u8> },
    /// An entry export `() -> i64`.
    Entry { export: String },
}

impl Job {
    /// The export it runs, for the log.
    pub fn export(&self) -> &str {
        match self {
            Job::Export { export, .. } | Job::Entry { export } => export,
        }
    }
}

/// A job on its way to a worker, with its chain and where its answer goes.
#[derive(Debug)]
pub struct Task {
    pub job: Job,
    pub chain: ChainId,
    pub reply: oneshot::Sender<Result<Outcome, GuestFailure>>,
}

impl Task {
    /// Hands the answer to whoever is waiting for it (if they still are).
    pub fn answer(self, result: Result<Outcome, GuestFailure>) {
        let _ = self.reply.send(result);
    }
}

/// Where the worker running a chain gets the calls of that chain.
pub type Inbox = mpsc::UnboundedSender<Task>;

/// The queue of calls and the workers running each chain. Shared by the router (which submits
/// calls) and the instances (which say which chain they run).
pub struct Calls {
    queue: mpsc::Sender<Task>,
    running: Mutex<HashMap<ChainId, Inbox>>,
}

/// The receiving end of the queue, for [`start`].
pub struct Queue(mpsc::Receiver<Task>);

impl Calls {
    /// An empty queue and no chain running.
    pub fn new() -> (Arc<Calls>, Queue) {
        let (queue, tasks) = mpsc::channel(QUEUE);
        let calls = Calls {
            queue,
            running: Mutex::new(HashMap::new()),
        };
        (Arc::new(calls), Queue(tasks))
    }

    /// Runs `job` as part of `chain` (a fresh chain when `None`): in the worker running that
    /// chain if there is one, else in the next free worker. Returns what it produced.
    pub async fn run(&self, job: Job, chain: Option<ChainId>) -> Result<Outcome, GuestFailure> {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            job,
            chain: chain.unwrap_or_else(reentry::fresh_chain),
            reply,
        };
        if let Some(task) = self.hand_to_runner(task) {
            self.queue.send(task).await.map_err(|_| stopped())?;
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Gives `task` to the worker running its chain; gives it back when there is none.
    fn hand_to_runner(&self, task: Task) -> Option<Task> {
        // Looked up and sent under the lock, so a worker that `leave`s has every task sent to
        // it in its inbox once `leave` returns.
        let running = self.running.lock().expect("running lock");
        match running.get(&task.chain) {
            Some(inbox) => inbox.send(task).err().map(|e| e.0),
            None => Some(task),
        }
    }

    /// Registers the worker with `inbox` as running `chain`. Returns false, registering
    /// nothing, when another worker runs it already (a chain that forked through events).
    pub fn enter(&self, chain: ChainId, inbox: &Inbox) -> bool {
        let mut running = self.running.lock().expect("running lock");
        if running.contains_key(&chain) {
            return false;
        }
        running.insert(chain, inbox.clone());
        true
    }

    /// The worker that [`entered`](Calls::enter) `chain` is done with it; nothing more reaches
    /// its inbox, and what is left there must go back to the queue ([`Calls::requeue`]).
    pub fn leave(&self, chain: ChainId) {
        self.running.lock().expect("running lock").remove(&chain);
    }

    /// Puts back in the queue a task handed to a worker whose call ended before it ran it.
    pub fn requeue(&self, task: Task) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            if let Err(e) = queue.send(task).await {
                e.0.answer(Err(stopped()));
            }
        });
    }
}

/// The failure of a call that no instance will run.
fn stopped() -> GuestFailure {
    GuestFailure {
        kind: "unavailable".into(),
        message: "the peer's instances have stopped".into(),
    }
}

/// Creates `workers` instances (running `_initialize` in each) and starts their tasks, which
/// take calls from `queue`.
pub async fn start(
    pre: InstancePre<HostState>,
    peer: Arc<PeerContext>,
    queue: Queue,
    workers: usize,
) -> anyhow::Result<()> {
    let queue = Arc::new(tokio::sync::Mutex::new(queue.0));
    for number in 1..=workers.max(1) {
        let live = instance::instantiate(&pre, &peer).await?;
        let worker = Worker {
            number,
            pre: pre.clone(),
            peer: peer.clone(),
            live,
        };
        tokio::spawn(worker.serve(queue.clone()));
    }
    Ok(())
}

/// One instance and the task that runs calls in it.
struct Worker {
    /// 1-based, for the log.
    number: usize,
    pre: InstancePre<HostState>,
    peer: Arc<PeerContext>,
    live: Live,
}

impl Worker {
    /// Takes calls from the queue while it is free, until the queue closes.
    async fn serve(mut self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Task>>>) {
        loop {
            // Idle workers wait in turn; the first takes the next call.
            let Some(task) = queue.lock().await.recv().await else {
                return;
            };
            let Task { job, chain, reply } = task;
            let export = job.export().to_string();
            let result = self.live.run(job, chain).await;
            if let Err(failure) = &result {
                self.replace(&export, failure).await;
            }
            let _ = reply.send(result);
        }
    }

    /// Replaces the instance after a trap.
    async fn replace(&mut self, export: &str, failure: &GuestFailure) {
        let worker = if self.peer.workers > 1 {
            format!(" of worker {}", self.number)
        } else {
            String::new()
        };
        tracing::warn!(
            "{export} trapped ({}: {}); replacing the instance{worker}: its state was reset",
            failure.kind,
            failure.message
        );
        let started = std::time::Instant::now();
        match instance::instantiate(&self.pre, &self.peer).await {
            Ok(fresh) => {
                self.live = fresh;
                tracing::debug!(
                    "fresh instance{worker} ready in {} µs",
                    started.elapsed().as_micros()
                );
            }
            Err(e) => tracing::error!("cannot create a fresh instance{worker}: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(chain: ChainId) -> Task {
        Task {
            job: Job::Entry {
                export: format!("e{chain}"),
            },
            chain,
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_chains_calls_go_to_the_worker_running_it_and_to_the_queue_after() {
        let (calls, _queue) = Calls::new();
        let (inbox, mut arrivals) = mpsc::unbounded_channel();
        assert!(calls.enter(7, &inbox));
        // A second worker cannot take over a chain that is running.
        let (other, _) = mpsc::unbounded_channel();
        assert!(!calls.enter(7, &other));
        assert!(calls.hand_to_runner(task(7)).is_none());
        assert_eq!(arrivals.try_recv().unwrap().chain, 7);
        // Another chain is queued.
        assert_eq!(calls.hand_to_runner(task(8)).unwrap().chain, 8);
        calls.leave(7);
        assert!(calls.hand_to_runner(task(7)).is_some());
        assert!(arrivals.try_recv().is_err());
    }
}
