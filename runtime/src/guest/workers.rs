//! The peer's instances (its workers), each taking calls from the scheduler's queue.
//!
//! Each worker is a task that owns one instance (its wasmtime `Store`) and runs one call at a
//! time. Calls wait in one queue ([`crate::guest::scheduler`]) that idle workers take from, so
//! with `--workers N` up to N calls run in parallel; with one worker (the default) calls run
//! one after another and the guest's state persists across them like one running process.
//!
//! While a worker runs a call of chain C, the calls of C that arrive are handed to it rather
//! than queued; it runs them the next time it waits on an outgoing call (see
//! [`crate::guest::reentry`]). That is how A → B → A callbacks and self-calls run instead of
//! deadlocking, and why a callback sees the state of the call it belongs to. What is still in
//! its hands when its call ends goes back to the queue.
//!
//! A worker whose instance traps replaces it with a fresh one, which the log says.

use std::sync::Arc;

use tokio::sync::mpsc;
use wasmtime::InstancePre;

use crate::guest::instance::{self, Live};
use crate::guest::scheduler::{GuestFailure, Queue, Task};
use crate::guest::state::{HostState, InstanceEnv};

/// Creates the configured number of instances (running `_initialize` in each) and starts
/// their tasks, which take calls from `queue`.
pub async fn start(
    pre: InstancePre<HostState>,
    env: InstanceEnv,
    queue: Queue,
) -> anyhow::Result<()> {
    let queue = Arc::new(tokio::sync::Mutex::new(queue.0));
    for number in 1..=env.config.workers.max(1) {
        let live = instance::instantiate(&pre, &env).await?;
        let worker = Worker {
            number,
            pre: pre.clone(),
            env: env.clone(),
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
    env: InstanceEnv,
    live: Live,
}

impl Worker {
    /// Takes calls from the queue while it is free, until the queue closes.
    async fn serve(mut self, queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Task>>>) {
        loop {
            // Idle workers wait in turn; the first takes the next call.
            let Some(mut task) = queue.lock().await.recv().await else {
                return;
            };
            if !task.start() {
                // Its time ran out while it was queued: it never runs.
                continue;
            }
            let Task {
                job,
                chain,
                deadline,
                reply,
                ..
            } = task;
            let export = job.export().to_string();
            let result = self.live.run(job, chain, deadline).await;
            if let Err(failure) = &result {
                self.replace(&export, failure).await;
            }
            let _ = reply.send(result);
        }
    }

    /// Replaces the instance after a trap.
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
        match instance::instantiate(&self.pre, &self.env).await {
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
