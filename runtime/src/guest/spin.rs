//! Waiting for a reply by polling for a moment before sleeping: how long an instance's waits
//! on its outgoing calls ([`crate::guest::reentry::wait_serving`]) keep the peer's thread
//! awake.
//!
//! A thread that sleeps until a reply comes (in `epoll_wait`) pays for its sleep twice: the
//! other side's `send` must wake it, and it must be scheduled again. On this 2-core VM that was
//! about a third of a 16-byte call's round trip (docs/performance.md). Replies that come within
//! [`SPIN`] are caught awake: the waiting task yields to the peer's other tasks and polls the
//! network without blocking until its reply is in or the time is up, then sleeps as before.
//! Only while a call of this instance's guest is outstanding (the guest is paused in the
//! import and has nothing else to do), and only while this instance's recent replies came
//! within [`SPIN`] (a moving average, [`RecentReplies`]): calls to far peers or long
//! functions sleep at once. `netrun bench`'s callers ([`crate::bench`]) wait the same way.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

/// The longest an instance polls for a reply before it sleeps.
pub const SPIN: Duration = Duration::from_micros(150);

/// How long this instance's recent replies took: a moving average over about the last eight.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecentReplies {
    typical: Duration,
}

impl RecentReplies {
    /// How long to poll for the next reply before sleeping: [`SPIN`] while recent replies came
    /// within it, else none.
    pub fn spin(&self) -> Duration {
        if self.typical <= SPIN {
            SPIN
        } else {
            Duration::ZERO
        }
    }

    /// A reply took `took`.
    pub fn record(&mut self, took: Duration) {
        self.typical = (self.typical * 7 + took) / 8;
    }
}

/// Runs `wait` (which must be ready when its reply is in), polling it without sleeping for up
/// to `spin`, yielding to the thread's other tasks between polls, then waiting for it as usual.
pub async fn spin_then_wait<F: Future>(wait: F, spin: Duration) -> F::Output {
    let mut wait = pin!(wait);
    if !spin.is_zero() {
        let until = Instant::now() + spin;
        loop {
            let polled = std::future::poll_fn(|cx| match wait.as_mut().poll(cx) {
                Poll::Ready(output) => Poll::Ready(Some(output)),
                Poll::Pending => Poll::Ready(None),
            })
            .await;
            if let Some(output) = polled {
                return output;
            }
            if Instant::now() >= until {
                break;
            }
            // Back in the queue behind the thread's other tasks, after a look at the network
            // that does not block.
            tokio::task::yield_now().await;
        }
    }
    wait.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_spins_while_its_replies_come_quickly_and_stops_when_they_do_not() {
        let mut recent = RecentReplies::default();
        assert_eq!(recent.spin(), SPIN);
        for _ in 0..8 {
            recent.record(Duration::from_micros(60));
        }
        assert_eq!(recent.spin(), SPIN);
        // A few slow replies (a long function, a far peer) and it sleeps at once.
        for _ in 0..3 {
            recent.record(Duration::from_millis(10));
        }
        assert_eq!(recent.spin(), Duration::ZERO);
        // Quick again for a while: it spins again.
        for _ in 0..40 {
            recent.record(Duration::from_micros(60));
        }
        assert_eq!(recent.spin(), SPIN);
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
