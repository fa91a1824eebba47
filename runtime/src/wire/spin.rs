//! Waiting by polling for a moment before sleeping: how long a peer's thread stays awake for
//! what it expects next.
//!
//! A thread that sleeps until its socket has something (in `epoll_wait`) pays for its sleep
//! twice: the other side's `send` must wake it, and it must be scheduled again. On this 2-core
//! VM that was about a third of a 16-byte call's round trip (docs/performance.md). What comes
//! within [`SPIN`] is caught awake: the waiting task yields to the thread's other tasks and
//! polls without blocking until it is in or the time is up, then sleeps as before. Past
//! [`SHARE_CPU_AFTER`] it also lets other threads ready on its CPU run between its polls.
//!
//! A socket read polled so does not wait for epoll to say the socket is readable: it looks at
//! the socket itself ([`polling_awake`], `crate::wire::stream`).
//!
//! Four waits poll so, each only while its recent waits came within [`SPIN`] (a moving
//! average, [`RecentWaits`]), so that waits on far peers, long functions or sporadic callers
//! sleep at once:
//! - a guest's wait on its outgoing call's reply ([`crate::guest::reentry::wait_serving`]): the
//!   guest is paused in the import and has nothing else to do;
//! - `netrun bench`'s callers ([`crate::bench`]), the same way, one caller at a time (the
//!   others sleep: the one polling keeps their thread awake for their replies);
//! - a connection's wait for its next call once it has none running
//!   ([`crate::wire::server`]): a caller making one call after another sends the next within
//!   a few tens of µs of its reply;
//! - an outgoing connection's wait for its next reply ([`crate::wire::client`]), for the same
//!   caller.
//!
//! Work that holds a thread for long between two waits shares its CPU the same way
//! ([`share_cpu`], [`let_others_run`]): the pieces of a large message going out, large copies
//! into and out of guest memory.

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, Instant};

/// The longest a wait polls before it sleeps.
pub const SPIN: Duration = Duration::from_micros(150);

/// After this long, a wait that polls gives its CPU to any other thread ready to run on it
/// between two polls (`sched_yield`): a round trip on loopback takes about 15 µs, so most
/// waits end before, and pay no system call for it. Where the thread it waits for is ready
/// but queued behind the poller on the same CPU (more busy threads than CPUs), the poller
/// would otherwise keep the CPU for its whole [`SPIN`]: 1–2 % of `remote_call_16b` took
/// 150 µs more than the rest (docs/performance.md).
pub const SHARE_CPU_AFTER: Duration = Duration::from_micros(25);

/// How long recent waits of one kind took: a moving average over about the last eight.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecentWaits {
    typical: Duration,
}

impl RecentWaits {
    /// Nothing known yet, and the first wait polls (a guest's replies, which are usually
    /// quick).
    pub fn quick() -> RecentWaits {
        RecentWaits::default()
    }

    /// Nothing known yet, and waits poll only after a run of quick ones (about twenty within a
    /// few tens of µs): a connection's next call, which for most connections (a subscriber's,
    /// a client's now and then) comes much later.
    pub fn slow() -> RecentWaits {
        RecentWaits { typical: SPIN * 10 }
    }

    /// How long to poll for the next wait's end before sleeping: [`SPIN`] while recent waits
    /// ended within it, else none.
    pub fn spin(&self) -> Duration {
        if self.typical <= SPIN {
            SPIN
        } else {
            Duration::ZERO
        }
    }

    /// A wait took `took`.
    pub fn record(&mut self, took: Duration) {
        self.typical = (self.typical * 7 + took) / 8;
    }
}

thread_local! {
    /// Whether the future being polled on this thread is polled awake ([`poll_awake`]).
    static POLLING_AWAKE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the future being polled on this thread is polled awake: a socket read that finds
/// nothing ready then looks at the socket itself (`crate::wire::stream`), since nothing will
/// sleep until epoll says it is readable.
pub fn polling_awake() -> bool {
    POLLING_AWAKE.get()
}

/// Runs `poll` (one poll of a future) as polled awake ([`polling_awake`]).
pub fn awake<T>(poll: impl FnOnce() -> T) -> T {
    /// Puts the flag back even if the poll panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLLING_AWAKE.set(self.0);
        }
    }
    let _restore = Restore(POLLING_AWAKE.replace(true));
    poll()
}

/// Polls `wait` without sleeping for up to `spin`, yielding to the thread's other tasks between
/// polls: its output if it was ready by then, else `None` (and `wait` can be awaited on).
pub async fn poll_awake<F: Future>(wait: Pin<&mut F>, spin: Duration) -> Option<F::Output> {
    poll_awake_looking(wait, spin, true).await
}

/// As [`poll_awake`]; its socket reads look at the socket themselves ([`polling_awake`]) only
/// if `look`.
pub async fn poll_awake_looking<F: Future>(
    mut wait: Pin<&mut F>,
    spin: Duration,
    look: bool,
) -> Option<F::Output> {
    if spin.is_zero() {
        return None;
    }
    let started = Instant::now();
    loop {
        let polled = std::future::poll_fn(|cx| {
            let polled = match look {
                true => awake(|| wait.as_mut().poll(cx)),
                false => wait.as_mut().poll(cx),
            };
            match polled {
                Poll::Ready(output) => Poll::Ready(Some(output)),
                Poll::Pending => Poll::Ready(None),
            }
        })
        .await;
        let waited = started.elapsed();
        if polled.is_some() || waited >= spin {
            return polled;
        }
        if waited >= SHARE_CPU_AFTER {
            // A thread waiting on this CPU (the other side of the call, on a busy machine)
            // runs now rather than after this one's time slice.
            share_cpu();
        }
        // Back in the queue behind the thread's other tasks, after a look at the network that
        // does not block.
        tokio::task::yield_now().await;
    }
}

/// Lets any other thread ready to run on this CPU run first (`sched_yield`). On loopback a
/// `send` wakes its receiver onto the sender's own CPU, as for a sender about to sleep, so a
/// peer's thread that goes on working (copying megabytes, writing or reading the pieces of a
/// large message) keeps the thread it woke (a caller whose small call it answered, a guest
/// polling for its reply) waiting behind it, while the other CPU idles, until it sleeps or a
/// scheduler tick comes (docs/performance.md).
pub fn share_cpu() {
    std::thread::yield_now();
}

/// Lets the other tasks of this thread run, then any other thread ready on its CPU
/// ([`share_cpu`]), then the tasks those woke: what the writer of a connection does between two
/// pieces of a large message. The reply that came in while a piece went out is read by the
/// first turn, and the guest it wakes makes its next call in the second, so that the call
/// leaves before the next piece rather than after it: on a one-worker peer (one thread)
/// each small call of `mixed_8mib_16b` otherwise waited for two pieces (docs/performance.md).
pub async fn let_others_run() {
    tokio::task::yield_now().await;
    share_cpu();
    tokio::task::yield_now().await;
}

/// Runs `wait`, polling it awake for up to `spin` ([`poll_awake`]), then waiting for it as
/// usual.
pub async fn spin_then_wait<F: Future>(wait: F, spin: Duration) -> F::Output {
    let mut wait = pin!(wait);
    match poll_awake(wait.as_mut(), spin).await {
        Some(output) => output,
        None => wait.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `waits` after `times` more waits of `took` each.
    fn after(mut waits: RecentWaits, times: usize, took: Duration) -> RecentWaits {
        for _ in 0..times {
            waits.record(took);
        }
        waits
    }

    #[test]
    fn a_wait_polls_while_recent_ones_were_quick_and_stops_when_they_are_not() {
        let recent = RecentWaits::quick();
        assert_eq!(recent.spin(), SPIN);
        let recent = after(recent, 8, Duration::from_micros(60));
        assert_eq!(recent.spin(), SPIN);
        // A few slow replies (a long function, a far peer) and it sleeps at once.
        let recent = after(recent, 3, Duration::from_millis(10));
        assert_eq!(recent.spin(), Duration::ZERO);
        // Quick again for a while: it spins again.
        let recent = after(recent, 40, Duration::from_micros(60));
        assert_eq!(recent.spin(), SPIN);
    }

    #[test]
    fn a_connection_polls_for_its_next_call_only_after_a_run_of_quick_ones() {
        let gaps = RecentWaits::slow();
        assert_eq!(gaps.spin(), Duration::ZERO);
        let gaps = after(gaps, 5, Duration::from_micros(40));
        assert_eq!(gaps.spin(), Duration::ZERO);
        let gaps = after(gaps, 30, Duration::from_micros(40));
        assert_eq!(gaps.spin(), SPIN);
    }

    #[tokio::test]
    async fn polling_awake_gives_up_after_its_time_and_the_wait_goes_on() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut rx = pin!(rx);
        let started = Instant::now();
        assert!(poll_awake(rx.as_mut(), SPIN).await.is_none());
        assert!(started.elapsed() >= SPIN);
        assert!(poll_awake(rx.as_mut(), Duration::ZERO).await.is_none());
        tx.send(3).unwrap();
        assert_eq!(poll_awake(rx.as_mut(), SPIN).await, Some(Ok(3)));
    }

    #[tokio::test]
    async fn a_reply_that_comes_while_spinning_or_after_is_returned() {
        // Ready while spinning: other tasks of the thread ran meanwhile (the sender).
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { tx.send(7).unwrap() });
        assert_eq!(spin_then_wait(rx, SPIN * 1000).await.unwrap(), 7);
        // Ready long after the spin: the wait goes on asleep.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(8).unwrap();
        });
        assert_eq!(spin_then_wait(rx, SPIN).await.unwrap(), 8);
        // No spin at all.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tx.send(9).unwrap();
        assert_eq!(spin_then_wait(rx, Duration::ZERO).await.unwrap(), 9);
    }
}
