//! The peer's instances (its workers), each taking calls from the scheduler's queue.
//!
//! Each worker is a task that owns one instance (its wasmtime `Store`) and runs one call at a
//! time. Calls wait in one queue ([`crate::guest::scheduler`]) that idle workers take from, so
//! with `--workers N` up to N calls run in parallel; with one worker (the default) calls run
//! one after another and the guest's state persists across them like one running process.
//!
//! Once a worker's call of chain C has sent something out (a call, a started call, an event),
//! the calls of C that arrive are handed to it rather than queued; it runs them the next time
//! it waits on an outgoing call (see [`crate::guest::reentry`]). That is how A → B → A
//! callbacks and self-calls run instead of deadlocking, and why a callback sees the state of
//! the call it belongs to. What is still in its hands when its call ends goes back to the
//! queue. Calls of C that arrive before it sent anything cannot be its callbacks (calls its
//! caller started together): they are queued, and another free worker runs them at once.
//!
//! A worker whose instance traps replaces it with a fresh one, which the log says. The fresh
//! one is made ahead of need (a spare per worker, made while the worker waits for calls), so
//! the replacement is a swap and the trapped call's caller hears of the trap before it.

use std::sync::Arc;

use wasmtime::InstancePre;

use crate::guest::instance::{self, Live};
use crate::guest::scheduler::{GuestFailure, Queue, Task};
use crate::guest::state::{HostState, InstanceEnv};

/// Creates the configured number of instances (running `_initialize` in each), with a spare
/// for each, and starts their tasks, which take calls from `queue`.
pub async fn start(
    pre: InstancePre<HostState>,
    env: InstanceEnv,
    queue: Queue,
) -> anyhow::Result<()> {
    for number in 1..=env.config.workers.max(1) {
        let live = instance::instantiate(&pre, &env).await?;
        let spare = Some(Spare::prepare(&pre, &env, None));
        let worker = Worker {
            number,
            pre: pre.clone(),
            env: env.clone(),
            live,
            spare,
        };
        tokio::spawn(worker.serve(queue.0.clone()));
    }
    Ok(())
}

/// Calls a worker takes one after another while its queue does not run empty: how far it is
/// through them, so that it lets their replies leave in two halves.
///
/// A client with several calls in flight on one connection (`netrun bench --concurrency 8`,
/// a guest's spawned calls) sends them in batches, and the worker answers a batch in one go.
/// Were its replies to leave together at its end, the two sides would take turns, each idle
/// while the other works through the whole batch. Let go halfway, the first half's replies
/// leave while the worker runs the second half, and the client works on them meanwhile: the
/// two sides overlap, for one more `send` per batch (docs/performance.md, where letting go
/// after every second or third call measured slower than halves). A burst of fewer than
/// [`Burst::SPLIT_FROM`] calls is left whole.
#[derive(Debug, Default)]
struct Burst {
    /// Calls in it when it started: the first one and those queued behind it.
    size: usize,
    /// Calls of it done with so far.
    done: usize,
}

impl Burst {
    /// The smallest burst answered in two halves.
    const SPLIT_FROM: usize = 4;

    /// A call taken from the queue is done with (answered, or dropped as its time ran out),
    /// `queued` calls still in the queue: whether this is the end of the burst's first half,
    /// after which the worker lets the replies so far leave. The burst ends when the queue is
    /// empty, and the next call starts another.
    fn done(&mut self, queued: usize) -> bool {
        if self.done == 0 {
            self.size = queued + 1;
        }
        self.done += 1;
        if queued == 0 {
            self.done = 0;
            return false;
        }
        self.size >= Self::SPLIT_FROM && self.done == self.size.div_ceil(2)
    }
}

/// One instance and the task that runs calls in it.
struct Worker {
    /// 1-based, for the log.
    number: usize,
    pre: InstancePre<HostState>,
    env: InstanceEnv,
    live: Live,
    /// The instance that takes over when `live` traps (`None` only while it does).
    spare: Option<Spare>,
}

/// Microseconds since `started`, to a hundredth: a swap to a spare takes well under one.
fn micros(started: std::time::Instant) -> String {
    format!("{:.2}", started.elapsed().as_secs_f64() * 1e6)
}

/// A fresh instance made ahead of need, so that replacing a trapped one is a swap: it is
/// made by a task of its own, which runs while the worker waits for calls.
struct Spare(tokio::task::JoinHandle<anyhow::Result<Live>>);

impl Spare {
    /// Starts making a fresh instance, after dropping `trapped` (the instance it replaces, if
    /// any: dropping one resets its memory, which is off the worker's path here, and frees its
    /// pool slot first, so a worker holds at most two).
    fn prepare(pre: &InstancePre<HostState>, env: &InstanceEnv, trapped: Option<Live>) -> Spare {
        let (pre, env) = (pre.clone(), env.clone());
        Spare(tokio::spawn(async move {
            drop(trapped);
            let started = std::time::Instant::now();
            let made = instance::instantiate(&pre, &env).await;
            tracing::debug!("spare instance made in {} µs", micros(started));
            made
        }))
    }

    /// The fresh instance, once it is made.
    async fn take(self) -> anyhow::Result<Live> {
        self.0
            .await
            .map_err(|e| anyhow::anyhow!("making a spare instance failed: {e}"))?
    }
}

impl Worker {
    /// Takes calls from the queue while it is free, until the queue closes.
    ///
    /// Each idle worker waits on the queue by itself: when they waited in turn behind a lock,
    /// the worker that took a call woke the next one as it let go of the lock, on its own
    /// thread, in the slot tokio runs next there and no other thread may take from; it then
    /// ran its call, and a long call held the next worker, and every call queued meanwhile,
    /// until it ended, while the runtime's other thread slept.
    async fn serve(mut self, queue: flume::Receiver<Task>) {
        let mut burst = Burst::default();
        loop {
            let Ok(mut task) = queue.recv_async().await else {
                return;
            };
            // A task whose time ran out while it was queued never runs. One clock read serves
            // that check and the start of the call's own time.
            let now = std::time::Instant::now();
            let trapped = if task.start(now) {
                self.answer(task, now).await
            } else {
                None
            };
            let queued = queue.len();
            let halfway = burst.done(queued);
            if queued == 0 || halfway {
                // Whoever waits for the answers (the connection that sends the replies) runs
                // before this worker goes back to the queue: when it is empty, or halfway
                // through a burst ([`Burst`]).
                tokio::task::yield_now().await;
            }
            if let Some((export, failure)) = trapped {
                self.replace(&export, &failure).await;
            }
        }
    }

    /// Runs `task`, started `now`, and answers it: the export and the failure if its instance
    /// trapped (the caller hears of the trap at once; the next call waits for the
    /// replacement).
    async fn answer(
        &mut self,
        task: Task,
        now: std::time::Instant,
    ) -> Option<(Arc<str>, GuestFailure)> {
        let deadline = task.deadline();
        let Task {
            job, chain, reply, ..
        } = task;
        let export = job.export().clone();
        let result = self.live.run(job, chain, deadline, now).await;
        let failure = result.as_ref().err().cloned();
        let _ = reply.send(result);
        failure.map(|failure| (export, failure))
    }

    /// Replaces the instance after a trap with the spare, then starts the next spare.
    async fn replace(&mut self, export: &str, failure: &GuestFailure) {
        let worker = if self.env.config.workers > 1 {
            format!(" of worker {}", self.number)
        } else {
            String::new()
        };
        let what = match failure {
            GuestFailure::Trap { .. } => "trapped",
            GuestFailure::TimedOut { .. } => "was stopped",
        };
        tracing::warn!(
            "{export} {what} ({failure}); replacing the instance{worker}: its state was reset"
        );
        let started = std::time::Instant::now();
        let spare = match self.spare.take() {
            Some(spare) => spare.take().await,
            None => Err(anyhow::anyhow!("none was started")),
        };
        let fresh = match spare {
            Ok(fresh) => Ok(fresh),
            // The spare could not be made (it says why): one more try, now.
            Err(e) => {
                tracing::debug!("no spare instance{worker}: {e:#}");
                instance::instantiate(&self.pre, &self.env).await
            }
        };
        let trapped = match fresh {
            Ok(fresh) => {
                let trapped = std::mem::replace(&mut self.live, fresh);
                tracing::debug!("fresh instance{worker} ready in {} µs", micros(started));
                Some(trapped)
            }
            Err(e) => {
                tracing::error!("cannot create a fresh instance{worker}: {e:#}");
                None
            }
        };
        self.spare = Some(Spare::prepare(&self.pre, &self.env, trapped));
    }
}

#[cfg(test)]
mod tests {
    use super::Burst;

    /// Whether each call of a burst of `size` lets the replies so far leave, the queue holding
    /// the rest of the burst as each is answered.
    fn let_go(burst: &mut Burst, size: usize) -> Vec<bool> {
        (1..=size).map(|n| burst.done(size - n)).collect()
    }

    #[test]
    fn a_burst_lets_its_replies_go_once_halfway() {
        let mut burst = Burst::default();
        let eight = let_go(&mut burst, 8);
        assert_eq!(
            eight,
            [false, false, false, true, false, false, false, false]
        );
        // The next burst counts anew: seven go as four and three.
        let seven = let_go(&mut burst, 7);
        assert_eq!(seven, [false, false, false, true, false, false, false]);
    }

    #[test]
    fn a_small_burst_is_left_whole() {
        let mut burst = Burst::default();
        assert!(let_go(&mut burst, 3).iter().all(|&halfway| !halfway));
        assert!(let_go(&mut burst, 1).iter().all(|&halfway| !halfway));
        assert_eq!(let_go(&mut burst, 4), [false, true, false, false]);
    }

    #[test]
    fn calls_queued_during_a_burst_do_not_move_its_halfway_point() {
        let mut burst = Burst::default();
        // A burst of four; two more calls arrive while it runs.
        assert!(!burst.done(3));
        assert!(burst.done(4));
        assert!(!burst.done(3));
        assert!(!burst.done(2));
        assert!(!burst.done(1));
        assert!(!burst.done(0));
        // The queue ran empty: the next call starts another burst.
        assert!(!burst.done(5));
        assert!(!burst.done(4));
        assert!(burst.done(3));
    }
}
