//! Calling any one live member of a group: `net::call_any` in a guest and `netrun call --group`.
//!
//! The members are those discovery lists in the group. Calls are spread over them in turn
//! (a rotation that each caller keeps), and a member found unreachable is skipped for the
//! next one: that call was never sent, so sending it elsewhere cannot run it twice. Any other
//! answer is the call's, failures included; a call whose outcome is unknown is never re-sent.
//! It does not find peers (discovery does) or send bytes (the client does).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netrun_abi::{CallError, Outcome, PeerInfo, PeerQuery, TimeoutStage};

use crate::cluster::discovery::Discovery;
use crate::wire::client::{Client, Request, Target};
use crate::wire::message::Encoding;

/// Where the next group call starts among the members, so calls are spread over them. It
/// starts at a random member, so that callers that make one call each (the CLI) spread too.
#[derive(Debug)]
pub struct Rotation(AtomicUsize);

impl Default for Rotation {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let random = std::hash::RandomState::new().build_hasher().finish();
        Rotation(AtomicUsize::new(random as usize))
    }
}

impl Rotation {
    fn next(&self, members: usize) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % members.max(1)
    }
}

/// Sends the request `make` builds to one live member of `group`, trying the next member
/// while one is unreachable, all within `timeout`. Answers the outcome and the member that
/// gave it (`None` when no member could be reached).
pub async fn call_any<'a>(
    client: &Client,
    discovery: &Discovery,
    rotation: &Rotation,
    group: &str,
    make: impl Fn() -> Request<'a>,
    timeout: Duration,
) -> (Outcome, Option<PeerInfo>) {
    let started = Instant::now();
    let deadline = started + timeout;
    let query = PeerQuery {
        groups: vec![group.to_string()],
        ..Default::default()
    };
    let mut members = discovery.peers(&query).await;
    // app-net peers answer JSON calls only.
    if make().encoding != Encoding::Json {
        members.retain(|m| !m.appnet);
    }
    let everyone = format!("any member of group {group}");
    if members.is_empty() {
        let error = CallError::PeerUnreachable {
            peer: everyone,
            reason: "no peer of this group was found".to_string(),
        };
        return (Outcome::Error(error), None);
    }
    let first = rotation.next(members.len());
    let mut reasons = Vec::new();
    for member in members.iter().cycle().skip(first).take(members.len()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let request = make();
            let error = CallError::Timeout {
                peer: everyone,
                function: request.function.to_string(),
                after_ms: started.elapsed().as_millis() as u64,
                stage: TimeoutStage::Connecting,
            };
            return (Outcome::Error(error), None);
        }
        let target = Target::from_address(&member.address());
        match client.call(&target, make(), left).await {
            Outcome::Error(CallError::PeerUnreachable { peer, reason }) => {
                tracing::debug!("group {group}: {peer} is unreachable ({reason}); trying the next");
                reasons.push(format!("{peer}: {reason}"));
            }
            outcome => return (outcome, Some(member.clone())),
        }
    }
    let error = CallError::PeerUnreachable {
        peer: everyone,
        reason: format!(
            "all {} members are unreachable: {}",
            members.len(),
            reasons.join("; ")
        ),
    };
    (Outcome::Error(error), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_visits_every_member_in_turn() {
        let rotation = Rotation::default();
        let first = rotation.next(3);
        let starts: Vec<usize> = (0..5).map(|_| rotation.next(3)).collect();
        let expected: Vec<usize> = (1..6).map(|i| (first + i) % 3).collect();
        assert_eq!(starts, expected);
        assert_eq!(rotation.next(0), 0);
    }
}
