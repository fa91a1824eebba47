//! Calls beyond one peer at a time: any live member of a group ([`call_any`]), and calls
//! started now and waited for later ([`Pending`], [`wait_all`]).

use std::marker::PhantomData;

use netrun_abi::{CallReplyRef, CallTargetRef, ContractRef, OutcomeRef, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::peer::{json_request, request, resolve, resolve_json};
use crate::{Error, Peer, host};

/// A call's result and the peer that served it (see [`call_any`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Served<R> {
    pub value: R,
    pub peer: Peer,
}

/// Calls `function` on one live member of `group`, chosen by the runtime: calls are spread
/// over the members, and a member that cannot be reached (the call was never sent) is skipped
/// for the next. Returns the result and the member that served it. `args` is the tuple of the
/// arguments, as for [`Peer::call`]; a connected function's stub has a typed form,
/// `f::any(group, args…)`.
///
/// ```no_run
/// let served: net::Served<u64> = net::call_any("workers", "count_words", ("a b c".to_string(),))?;
/// println!("{} words, counted by {}", served.value, served.peer.display_name());
/// # Ok::<(), net::Error>(())
/// ```
pub fn call_any<A: Serialize, R: DeserializeOwned>(
    group: &str,
    function: &str,
    args: A,
) -> Result<Served<R>, Error> {
    any(group, function, &args, None)
}

/// [`call_any`] with the caller's contract (what the stubs use).
pub(crate) fn any<A: Serialize + ?Sized, R: DeserializeOwned>(
    group: &str,
    function: &str,
    args: &A,
    contract: Option<ContractRef<'_>>,
) -> Result<Served<R>, Error> {
    let target = CallTargetRef::AnyOf(group);
    let reply = host::call(&request(target, function, args, contract)?);
    served(codec::decode_borrowed(&reply)?, group, function)
}

/// The result in `reply` to a call of `function` on any member of `group`.
fn served<R: DeserializeOwned>(
    reply: CallReplyRef<'_>,
    group: &str,
    function: &str,
) -> Result<Served<R>, Error> {
    match (reply.served_by, reply.outcome) {
        (Some(member), outcome) => {
            let peer = Peer::from(member);
            let value = resolve(outcome, &peer, function)?;
            Ok(Served { value, peer })
        }
        (None, OutcomeRef::Error(e)) => Err(e),
        (None, _) => Err(Error::Protocol {
            peer: format!("any member of group {group}"),
            message: format!("{function} was answered without saying which member served it"),
        }),
    }
}

/// A call started with [`Peer::spawn`] (or a stub's `f::spawn(&peer, args…)`), running while
/// the guest goes on. [`Pending::wait`] gives its result; dropping it without waiting lets the
/// call run on and drops its reply. While the guest waits, calls that come back to it as part
/// of the same chain are served, as during any call.
#[must_use = "a started call's result is only known by waiting for it"]
pub struct Pending<R> {
    state: State,
    function: String,
    peer: Peer,
    /// Started in JSON, on a peer discovery found to be app-net's.
    json: bool,
    result: PhantomData<fn() -> R>,
}

enum State {
    /// Started; the host's handle.
    Started(i64),
    /// Could not be started (its arguments did not encode).
    Failed(Error),
    /// Waited for.
    Done,
}

impl<R: DeserializeOwned> Pending<R> {
    /// Starts `function` on `peer` with encoded `args`, checking `contract` on the other side
    /// (in JSON, without a contract, on an app-net peer).
    pub(crate) fn start<A: Serialize + ?Sized>(
        peer: &Peer,
        function: &str,
        args: &A,
        contract: Option<ContractRef<'_>>,
    ) -> Pending<R> {
        let request = match peer.appnet {
            true => json_request(peer.target(), function, args)
                .and_then(|request| Ok(codec::encode(&request)?)),
            false => request(CallTargetRef::Peer(&peer.id), function, args, contract),
        };
        let started = request.map(|request| host::call_start(&request));
        Pending {
            state: match started {
                Ok(handle) => State::Started(handle),
                Err(e) => State::Failed(e),
            },
            function: function.to_string(),
            peer: peer.clone(),
            json: peer.appnet,
            result: PhantomData,
        }
    }

    /// Waits for the call's result (flags are resolved here, as for [`Peer::call`]).
    ///
    /// ```no_run
    /// let peer = net::peer_group("workers")?.remove(0);
    /// let pending: net::Pending<String> = peer.spawn("greet", ("bob".to_string(),));
    /// // … other work, or other calls …
    /// let greeting = pending.wait()?;
    /// # Ok::<(), net::Error>(())
    /// ```
    pub fn wait(mut self) -> Result<R, Error> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Started(handle) => {
                let reply = host::call_wait(handle);
                let reply: CallReplyRef = codec::decode_borrowed(&reply)?;
                match self.json {
                    true => resolve_json(reply.outcome, &self.peer, &self.function),
                    false => resolve(reply.outcome, &self.peer, &self.function),
                }
            }
            State::Failed(e) => Err(e),
            State::Done => unreachable!("a pending call is waited for once: `wait` takes it"),
        }
    }

    /// The peer the call runs on.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl<R> Drop for Pending<R> {
    fn drop(&mut self) {
        if let State::Started(handle) = self.state {
            host::call_forget(handle);
        }
    }
}

/// Waits for every call in `pending` and returns their results in the same order. The calls
/// ran concurrently from the moment each was started, so this takes about as long as the
/// slowest of them.
///
/// ```no_run
/// let peers = net::peer_group("workers")?;
/// let started: Vec<net::Pending<u64>> = peers.iter().map(|p| p.spawn("busy", (100u64,))).collect();
/// for result in net::wait_all(started) {
///     println!("{}", result?);
/// }
/// # Ok::<(), net::Error>(())
/// ```
pub fn wait_all<R: DeserializeOwned>(
    pending: impl IntoIterator<Item = Pending<R>>,
) -> Vec<Result<R, Error>> {
    pending.into_iter().map(Pending::wait).collect()
}

#[cfg(test)]
mod tests {
    use netrun_abi::{PeerInfo, peer_id};

    use netrun_abi::{CallReply, Outcome};

    use super::*;

    /// `reply` as the host hands it over, then read where it lies.
    fn served_by_reply<R: DeserializeOwned>(reply: CallReply) -> Result<Served<R>, Error> {
        let bytes = codec::encode(&reply).unwrap();
        served(codec::decode_borrowed(&bytes).unwrap(), "workers", "f")
    }

    fn member() -> PeerInfo {
        PeerInfo {
            id: peer_id::encode("127.0.0.1", 3011, "workers"),
            host: "127.0.0.1".into(),
            port: 3011,
            group: "workers".into(),
            hub: false,
            appnet: false,
        }
    }

    #[test]
    fn a_group_reply_names_the_member_that_served_it() {
        let reply = CallReply {
            outcome: Outcome::Value(codec::encode(&7u32).unwrap()),
            served_by: Some(member()),
        };
        let served: Served<u32> = served_by_reply(reply).unwrap();
        assert_eq!((served.value, served.peer.port), (7, 3011));
    }

    #[test]
    fn a_group_call_that_reached_no_member_is_its_error() {
        let unreachable = Error::PeerUnreachable {
            peer: "any member of group workers".into(),
            reason: "no peer of this group was found".into(),
        };
        let reply = CallReply {
            outcome: Outcome::Error(unreachable.clone()),
            served_by: None,
        };
        assert_eq!(served_by_reply::<u32>(reply), Err(unreachable));
    }

    #[test]
    fn outside_a_peer_a_started_call_fails_when_waited_for() {
        let peer = Peer::from(member());
        let pending: Pending<u32> = peer.spawn("f", ());
        let Err(Error::Protocol { message, .. }) = pending.wait() else {
            panic!("expected the host's absence");
        };
        assert!(message.contains("only inside a netrun peer"), "{message}");
    }
}
