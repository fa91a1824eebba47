//! `netrun bench`: calls a function on a running peer many times, some at once, and reports the
//! latency distribution and the rate, as `redis-benchmark` does for Redis.
//!
//! It owns the load (who calls what, how often, how many at once) and the arithmetic of the
//! report ([`Summary`]), which the project's benchmark harness (`make bench`) reports with too.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netrun_abi::{CallError, Outcome};
use serde::Serialize;

use crate::wire::client::{Client, Request, Target};
use crate::wire::spin::{self, RecentWaits};

/// Latencies and rate of a run of calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Calls measured.
    pub calls: usize,
    /// Median latency, in microseconds.
    pub p50_us: f64,
    /// 99th-percentile latency, in microseconds.
    pub p99_us: f64,
    pub mean_us: f64,
    /// Calls completed per second of wall time.
    pub throughput: f64,
}

impl Summary {
    /// The summary of `latencies` (sorted in place) of calls that took `wall` in all.
    ///
    /// # Panics
    /// On an empty list: a run measures at least one call.
    pub fn of(latencies: &mut [Duration], wall: Duration) -> Summary {
        let spread = Spread::of(latencies);
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        Summary {
            calls: latencies.len(),
            p50_us: micros(spread.p50),
            p99_us: micros(spread.p99),
            mean_us: micros(spread.mean),
            throughput: latencies.len() as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

/// The median, the 99th percentile and the mean of some durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

impl Spread {
    /// The spread of `samples` (sorted in place).
    ///
    /// # Panics
    /// On an empty list.
    pub fn of(samples: &mut [Duration]) -> Spread {
        assert!(!samples.is_empty(), "a spread of no samples");
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Spread {
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            mean: total / samples.len() as u32,
        }
    }
}

/// The `p`th percentile of `sorted` (nearest rank): the smallest value that at least `p`% of
/// the values do not exceed.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What to measure: `calls` calls of `function` on `target`, `concurrency` at a time, each with
/// one string argument of `size` bytes.
#[derive(Debug, Clone)]
pub struct Load {
    pub target: Target,
    pub function: String,
    pub calls: usize,
    pub concurrency: usize,
    pub size: usize,
    /// Longest wait for one call.
    pub timeout: Duration,
}

impl Load {
    /// The JSON arguments of every call: one string of `size` bytes.
    fn arguments(&self) -> Vec<u8> {
        let mut json = Vec::with_capacity(self.size + 4);
        json.extend_from_slice(b"[\"");
        json.resize(json.len() + self.size, b'x');
        json.extend_from_slice(b"\"]");
        json
    }
}

/// Why a run stopped before its last call.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// No connection to the peer, before the first call.
    #[error("before the first call: {0}")]
    Connect(CallError),
    /// A call failed.
    #[error("call {number} of {calls} to {function} on peer {peer} failed: {reason}")]
    Call {
        number: usize,
        calls: usize,
        function: String,
        peer: String,
        reason: String,
    },
}

/// What a run measured: the connection, then the calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Time to connect to the peer (its handshake included), before the calls' clock started.
    pub connect: Duration,
    pub calls: Summary,
}

/// Runs `load` through `client`: it connects first (as `redis-benchmark` does, so that no
/// call's time holds the handshake), then `concurrency` callers share the connection and take
/// the next call until all are made. One caller at a time waits on its call as a guest does,
/// polling awake for up to [`spin::SPIN`] before sleeping while recent calls were that quick
/// ([`Poller`]); the others sleep, and that one's polling keeps their thread awake for their
/// replies too. `progress` is told every second how many calls have completed. The first
/// failed call stops the run.
pub async fn run(
    client: Arc<Client>,
    load: &Load,
    progress: impl Fn(usize, Duration),
) -> Result<Measured, BenchError> {
    let connecting = Instant::now();
    client
        .connect(&load.target, load.timeout)
        .await
        .map_err(BenchError::Connect)?;
    let connect = connecting.elapsed();
    let args = Arc::new(load.arguments());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let poller = Poller::default();
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency.clamp(1, load.calls.max(1)) {
        let (client, load, args) = (client.clone(), load.clone(), args.clone());
        let (next, done, poller) = (next.clone(), done.clone(), poller.clone());
        callers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < load.calls {
                let request = Request::json(&load.function, args.to_vec());
                let sent = Instant::now();
                let call = client.call(&load.target, request, load.timeout);
                let (outcome, took) = poller.wait(call, sent).await;
                latencies.push(took);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Err(reason) = answered(outcome) {
                    return Err(BenchError::Call {
                        number: finished,
                        calls: load.calls,
                        function: load.function.clone(),
                        peer: load.target.display.clone(),
                        reason,
                    });
                }
            }
            Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(load.calls);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            joined = callers.join_next() => match joined {
                Some(Ok(Ok(mine))) => latencies.extend(mine),
                Some(Ok(Err(failure))) => return Err(failure),
                Some(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
                None => break,
            },
            _ = tick.tick() => progress(done.load(Ordering::Relaxed), started.elapsed()),
        }
    }
    Ok(Measured {
        connect,
        calls: Summary::of(&mut latencies, started.elapsed()),
    })
}

/// Which of the callers polls awake for its reply: one at a time, and only while recent calls
/// were answered within [`spin::SPIN`] ([`RecentWaits`]). The callers share one thread, and one
/// of them polling keeps that thread awake for the replies of all; each more would only add
/// its own turn (and, past [`spin::SHARE_CPU_AFTER`], a `sched_yield`) to every round of the
/// thread's tasks. With many calls in flight, each waits longer than that, and polling would
/// only take the CPU from the peer answering them.
#[derive(Clone, Default)]
struct Poller {
    /// Held by the caller polling.
    polling: Arc<tokio::sync::Mutex<()>>,
    recent: Arc<Mutex<RecentWaits>>,
}

impl Poller {
    /// Waits for `call`, made at `sent`: polling awake for a while if no other caller is and
    /// recent calls were quick, then asleep until it is done. Returns its output and how long
    /// it took from `sent` (one clock read: at 64 calls in flight, each read is a few percent
    /// of the client's work per call).
    async fn wait<F: Future>(&self, call: F, sent: Instant) -> (F::Output, Duration) {
        let spin = self.recent.lock().expect("recent waits").spin();
        let mut call = pin!(call);
        let polled = match self.take_turn() {
            Some(_turn) => spin::poll_awake(call.as_mut(), spin).await,
            None => None,
        };
        let output = match polled {
            Some(output) => output,
            None => call.await,
        };
        let took = sent.elapsed();
        self.recent.lock().expect("recent waits").record(took);
        (output, took)
    }

    /// The turn to poll, if no other caller has it; given back when dropped.
    fn take_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.polling.try_lock().ok()
    }
}

/// A call's outcome as success or the reason it failed.
fn answered(outcome: Outcome) -> Result<(), String> {
    match outcome {
        Outcome::Value(_) | Outcome::ValueWithBlobs(_) => Ok(()),
        Outcome::Flag(flag) => Err(format!("it answered with flag {flag}")),
        Outcome::Error(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&ms(&[7]), 99.0), Duration::from_millis(7));
    }

    #[test]
    fn a_summary_sorts_and_rates() {
        let mut latencies = ms(&[30, 10, 20, 40]);
        let summary = Summary::of(&mut latencies, Duration::from_secs(2));
        assert_eq!(summary.calls, 4);
        assert_eq!(summary.p50_us, 20_000.0);
        assert_eq!(summary.p99_us, 40_000.0);
        assert_eq!(summary.mean_us, 25_000.0);
        assert_eq!(summary.throughput, 2.0);
    }

    #[tokio::test]
    async fn one_caller_at_a_time_polls_and_every_caller_gets_its_outcome() {
        let poller = Poller::default();
        let turn = poller.take_turn();
        assert!(turn.is_some());
        assert!(poller.take_turn().is_none(), "a second caller polls too");
        // One caller polls: the others wait asleep, and get their outcome all the same.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { tx.send(5).unwrap() });
        let sent = Instant::now();
        let (outcome, took) = poller.wait(rx, sent).await;
        assert_eq!(outcome.unwrap(), 5);
        assert!(
            took <= sent.elapsed(),
            "a wait longer than the time since it started"
        );
        drop(turn);
        // The turn given back, the next caller polls, and gives it back when answered.
        assert_eq!(poller.wait(async { 6 }, Instant::now()).await.0, 6);
        assert!(poller.take_turn().is_some(), "the turn was not given back");
    }

    #[test]
    fn the_argument_is_one_string_of_the_size() {
        let load = Load {
            target: Target::parse("127.0.0.1:1").unwrap(),
            function: "pass_through".into(),
            calls: 1,
            concurrency: 1,
            size: 5,
            timeout: Duration::from_secs(1),
        };
        let args: Vec<String> = serde_json::from_slice(&load.arguments()).unwrap();
        assert_eq!(args, ["xxxxx"]);
    }
}
