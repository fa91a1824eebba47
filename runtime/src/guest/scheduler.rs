//! The queue of calls into a peer's instances, and which instance runs each chain.
//!
//! Every call belongs to a call chain ([`ChainId`]): the chain of the call that caused it, or a
//! fresh one ([`fresh_chain`]). A call is a [`Task`]: a [`Job`], its chain and where its answer
//! goes. [`Scheduler::run`] gives it to the worker registered as running its chain, if one is
//! (that worker runs it nested, see [`crate::guest::reentry`]; a worker registers once its call
//! sends something out, see [`crate::guest::chain`]), else to the queue idle workers take from
//! (see [`crate::guest::workers`]).
//!
//! A task may have a deadline: when its caller stops waiting. A task still queued then never
//! runs: exactly one of the worker that takes it ([`Task::start`]) and the deadline claims it,
//! and the caller learns that its time ran out while queued.
//!
//! Owns the queue and the table of running chains; it does not run guest code.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use netrun_abi::{Outcome, TimeoutStage};
use tokio::sync::{mpsc, oneshot};

use crate::wire::message::ChainId;

/// Calls waiting for a free worker before callers wait to queue theirs.
const QUEUE: usize = 1024;

/// A new chain id: unpredictable to other peers (keyed by process-random SipHash), distinct
/// within this process.
pub fn fresh_chain() -> ChainId {
    static KEYS: OnceLock<std::hash::RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(std::hash::RandomState::new).build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Why a job did not produce an [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// The guest trapped (and its instance is replaced), or no instance could run the job.
    Trap {
        /// `panic`, `deadline`, `memory limit`, `trap: <what>`…
        kind: String,
        message: String,
    },
    /// The time its caller gave the job ran out `after` it was submitted, in `stage`: queued
    /// (it never ran) or running (the guest was stopped, and its instance is replaced).
    TimedOut {
        stage: TimeoutStage,
        after: Duration,
    },
}

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFailure::Trap { kind, message } => write!(f, "{kind}: {message}"),
            GuestFailure::TimedOut { stage, after } => {
                write!(f, "timed out after {} ms {stage}", after.as_millis())
            }
        }
    }
}

/// What to run in an instance.
#[derive(Debug)]
pub enum Job {
    /// A function export `(ptr, len) -> i64` with these argument bytes (a payload with blobs
    /// when `with_blobs`: see `netrun_abi::blob`).
    Export {
        export: Arc<str>,
        args: Vec<u8>,
        with_blobs: bool,
    },
    /// An entry export `() -> i64`.
    Entry { export: Arc<str> },
}

impl Job {
    /// The export it runs, for the log.
    pub fn export(&self) -> &Arc<str> {
        match self {
            Job::Export { export, .. } | Job::Entry { export } => export,
        }
    }
}

/// A task waits for a worker.
const QUEUED: u8 = 0;
/// A worker runs it.
const STARTED: u8 = 1;
/// Its time ran out first: it never runs.
const EXPIRED: u8 = 2;

/// When a task's caller stops waiting, and when the task was submitted (how long it waited,
/// which a timeout reports, is counted from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Instant,
    pub submitted: Instant,
}

impl Due {
    /// A task submitted `now`, whose caller waits `left` from then. The clock is read once,
    /// by whoever submits the task.
    pub fn within(left: Duration, now: Instant) -> Due {
        Due {
            at: now + left,
            submitted: now,
        }
    }
}

/// A job on its way to a worker, with its chain, its deadline and where its answer goes.
#[derive(Debug)]
pub struct Task {
    pub job: Job,
    pub chain: ChainId,
    /// When its caller stops waiting, and when it was submitted; `None`: never.
    pub due: Option<Due>,
    /// [`QUEUED`], [`STARTED`] or [`EXPIRED`], shared with [`Scheduler::run`].
    state: Arc<AtomicU8>,
    pub reply: oneshot::Sender<Result<Outcome, GuestFailure>>,
}

impl Task {
    /// When its caller stops waiting; `None`: never.
    pub fn deadline(&self) -> Option<Instant> {
        self.due.map(|due| due.at)
    }

    /// Claims the task for running, `now`. False when its time ran out first: then it must not
    /// run, and its caller has been (or is here) told so.
    pub fn start(&mut self, now: Instant) -> bool {
        if let Some(due) = self.due
            && now >= due.at
            && expire(&self.state)
        {
            let _ = std::mem::replace(&mut self.reply, oneshot::channel().0).send(Err(
                GuestFailure::TimedOut {
                    stage: TimeoutStage::Queued,
                    after: now.saturating_duration_since(due.submitted),
                },
            ));
            return false;
        }
        self.state
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Hands the answer to whoever is waiting for it (if they still are).
    pub fn answer(self, result: Result<Outcome, GuestFailure>) {
        let _ = self.reply.send(result);
    }
}

/// Marks a queued task expired; false if a worker started it first (or it expired already).
fn expire(state: &AtomicU8) -> bool {
    state
        .compare_exchange(QUEUED, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Where the worker running a chain gets the calls of that chain.
pub type Inbox = mpsc::UnboundedSender<Task>;

/// The queue of calls and the workers running each chain. Shared by whoever submits calls (the
/// router, an entry) and the instances (which say which chain they run).
pub struct Scheduler {
    queue: flume::Sender<Task>,
    running: Mutex<HashMap<ChainId, Inbox>>,
}

/// The receiving end of the queue, for [`crate::guest::workers::start`]: each idle worker waits
/// on a clone of its own, so none waits behind another (see `Worker::serve`).
pub struct Queue(pub(crate) flume::Receiver<Task>);

impl Scheduler {
    /// An empty queue and no chain running.
    pub fn new() -> (Arc<Scheduler>, Queue) {
        let (queue, tasks) = flume::bounded(QUEUE);
        let scheduler = Scheduler {
            queue,
            running: Mutex::new(HashMap::new()),
        };
        (Arc::new(scheduler), Queue(tasks))
    }

    /// Runs `job` as part of `chain` (a fresh chain when `None`): in the worker running that
    /// chain if there is one, else in the next free worker. Returns what it produced. With a
    /// `due` time, a job still queued then never runs (the answer says so at once); one
    /// running then is stopped by its instance, which knows the deadline from the task.
    pub async fn run(
        &self,
        job: Job,
        chain: Option<ChainId>,
        due: Option<Due>,
    ) -> Result<Outcome, GuestFailure> {
        let (reply, answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let task = Task {
            job,
            chain: chain.unwrap_or_else(fresh_chain),
            due,
            state: state.clone(),
            reply,
        };
        let answered = async {
            if let Some(task) = self.hand_to_runner(task) {
                self.queue.send_async(task).await.map_err(|_| stopped())?;
            }
            answer.await.map_err(|_| stopped())?
        };
        let Some(due) = due else {
            return answered.await;
        };
        tokio::pin!(answered);
        tokio::select! {
            result = &mut answered => return result,
            () = tokio::time::sleep_until(due.at.into()) => {}
        }
        if expire(&state) {
            return Err(GuestFailure::TimedOut {
                stage: TimeoutStage::Queued,
                after: due.submitted.elapsed(),
            });
        }
        // Started in time: its instance stops it at the deadline and answers.
        answered.await
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

    /// The worker that [`entered`](Scheduler::enter) `chain` is done with it; nothing more
    /// reaches its inbox, and what is left there must go back to the queue
    /// ([`Scheduler::requeue`]).
    pub fn leave(&self, chain: ChainId) {
        self.running.lock().expect("running lock").remove(&chain);
    }

    /// Puts back in the queue a task handed to a worker whose call ended before it ran it.
    pub fn requeue(&self, task: Task) {
        let queue = self.queue.clone();
        tokio::spawn(async move {
            if let Err(e) = queue.send_async(task).await {
                e.0.answer(Err(stopped()));
            }
        });
    }
}

/// The failure of a call that no instance will run.
fn stopped() -> GuestFailure {
    GuestFailure::Trap {
        kind: "unavailable".into(),
        message: "the peer's instances have stopped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(chain: ChainId) -> Task {
        Task {
            job: Job::Entry {
                export: format!("e{chain}").into(),
            },
            chain,
            due: None,
            state: Arc::new(AtomicU8::new(QUEUED)),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_chains_calls_go_to_the_worker_running_it_and_to_the_queue_after() {
        let (scheduler, _queue) = Scheduler::new();
        let (inbox, mut arrivals) = mpsc::unbounded_channel();
        assert!(scheduler.enter(7, &inbox));
        // A second worker cannot take over a chain that is running.
        let (other, _) = mpsc::unbounded_channel();
        assert!(!scheduler.enter(7, &other));
        assert!(scheduler.hand_to_runner(task(7)).is_none());
        assert_eq!(arrivals.try_recv().unwrap().chain, 7);
        // Another chain is queued.
        assert_eq!(scheduler.hand_to_runner(task(8)).unwrap().chain, 8);
        scheduler.leave(7);
        assert!(scheduler.hand_to_runner(task(7)).is_some());
        assert!(arrivals.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_task_whose_time_ran_out_in_the_queue_never_starts() {
        let (scheduler, queue) = Scheduler::new();
        let soon = Due::within(Duration::from_millis(20), Instant::now());
        let job = Job::Entry { export: "e".into() };
        // Nobody takes the task before its deadline: its caller hears "queued".
        let Err(GuestFailure::TimedOut { stage, .. }) = scheduler.run(job, None, Some(soon)).await
        else {
            panic!("expected a timeout");
        };
        assert_eq!(stage, TimeoutStage::Queued);
        // A worker that takes it afterwards must not run it.
        let mut task = queue
            .0
            .recv_async()
            .await
            .expect("the task is in the queue");
        assert!(!task.start(Instant::now()));
        // A task in time starts once, and then cannot expire.
        let mut fresh = task_with_deadline(Instant::now() + Duration::from_secs(60));
        assert!(fresh.start(Instant::now()));
        assert!(!expire(&fresh.state));
    }

    #[tokio::test]
    async fn a_worker_that_finds_a_task_past_its_deadline_answers_queued() {
        let (reply, answer) = oneshot::channel();
        let mut task = Task {
            reply,
            ..task_with_deadline(Instant::now())
        };
        assert!(!task.start(Instant::now()));
        let Ok(Err(GuestFailure::TimedOut { stage, .. })) = answer.await else {
            panic!("expected a timeout");
        };
        assert_eq!(stage, TimeoutStage::Queued);
    }

    fn task_with_deadline(deadline: Instant) -> Task {
        Task {
            due: Some(Due {
                at: deadline,
                submitted: Instant::now(),
            }),
            ..task(1)
        }
    }

    #[test]
    fn fresh_chains_differ() {
        let chains: std::collections::HashSet<ChainId> = (0..1000).map(|_| fresh_chain()).collect();
        assert_eq!(chains.len(), 1000);
    }
}
