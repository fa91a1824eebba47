//! Peers as the guest sees them: finding them, and calling functions on them.

use netrun_abi::names::{builtin, flag};
use netrun_abi::{
    CallReplyRef, CallRequest, CallTarget, CallTargetRef, ContractRef, OutcomeRef, PeerDetails,
    PeerInfo, PeerQuery, blob, codec, peer_id,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Pending, host};

/// Another peer (or this one): where it is, its group, whether it is a hub.
///
/// ```no_run
/// let peer = net::Peer::from_id("MTI3LjAuMC4xOjMwMTAgLT4gTm9uZQ==")?;
/// assert_eq!((peer.host.as_str(), peer.port, peer.group.as_str()), ("127.0.0.1", 3010, "None"));
/// let sum: i64 = peer.call("add", (2i64, 3i64))?;
/// # Ok::<(), net::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// Base64 of `"host:port -> group"`.
    pub id: String,
    pub host: String,
    pub port: u16,
    pub group: String,
    pub hub: bool,
    /// An app-net (Python) peer, as discovery found it (`false` for a peer made from its id).
    /// Typed stubs and [`Peer::call`] call it with JSON arguments.
    pub appnet: bool,
}

/// A peer as the host describes it.
///
/// ```
/// let info = netrun_abi::PeerInfo {
///     id: "MTI3LjAuMC4xOjMwMTAgLT4gTm9uZQ==".into(),
///     host: "127.0.0.1".into(),
///     port: 3010,
///     group: "None".into(),
///     hub: true,
///     appnet: false,
/// };
/// assert!(net::Peer::from(info).hub);
/// ```
impl From<PeerInfo> for Peer {
    fn from(info: PeerInfo) -> Peer {
        Peer {
            id: info.id,
            host: info.host,
            port: info.port,
            group: info.group,
            hub: info.hub,
            appnet: info.appnet,
        }
    }
}

impl Peer {
    /// This peer as the target of a request that owns it (a JSON call's, made rarely).
    pub(crate) fn target(&self) -> CallTarget {
        CallTarget::Peer(self.id.clone())
    }

    /// The peer a peer id names (its hub flag is unknown, so `false`).
    ///
    /// ```
    /// let peer = net::Peer::from_id("MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ==").unwrap();
    /// assert_eq!(peer.port, 3010);
    /// assert!(net::Peer::from_id("nonsense!").is_err());
    /// ```
    pub fn from_id(id: &str) -> Result<Peer, Error> {
        let address = peer_id::decode(id)?;
        Ok(Peer {
            id: id.to_string(),
            host: address.host,
            port: address.port,
            group: address.group,
            hub: false,
            appnet: false,
        })
    }

    /// `host:port -> group`, the readable form of the id (what error messages name).
    ///
    /// ```
    /// let peer = net::Peer::from_id("MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ==").unwrap();
    /// assert_eq!(peer.display_name(), "192.168.2.24:3010 -> None");
    /// ```
    pub fn display_name(&self) -> String {
        peer_id::PeerAddress::new(self.host.as_str(), self.port, self.group.as_str()).to_string()
    }

    /// Calls the function registered as `function` on this peer. `args` is the tuple of the
    /// arguments: `()` for none, `(x,)` for one.
    ///
    /// ```no_run
    /// # let peer = net::this_peer();
    /// let greeting: String = peer.call("greet", ("world".to_string(),))?;
    /// # Ok::<(), net::Error>(())
    /// ```
    pub fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        function: &str,
        args: A,
    ) -> Result<R, Error> {
        call(self, function, &args, None)
    }

    /// The peer's description (built-in `info`).
    ///
    /// ```no_run
    /// # let peer = net::this_peer();
    /// println!("{:?}", peer.info()?.connections);
    /// # Ok::<(), net::Error>(())
    /// ```
    pub fn info(&self) -> Result<PeerDetails, Error> {
        self.call(builtin::INFO, ())
    }

    /// Sends `value` to the peer and back (built-in `pass_through`).
    ///
    /// ```no_run
    /// # let peer = net::this_peer();
    /// assert_eq!(peer.pass_through(42u32)?, 42);
    /// # Ok::<(), net::Error>(())
    /// ```
    pub fn pass_through<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<T, Error> {
        self.call(builtin::PASS_THROUGH, (value,))
    }

    /// Starts a call of `function` on this peer and returns at once; the call runs while the
    /// guest goes on, and [`Pending::wait`] (or [`crate::wait_all`]) gives its result. `args`
    /// is the tuple of the arguments, as for [`Peer::call`].
    ///
    /// ```no_run
    /// let workers = net::peer_group("workers")?;
    /// let started: Vec<net::Pending<u64>> =
    ///     workers.iter().map(|peer| peer.spawn("count_words", ("some text".to_string(),))).collect();
    /// let total: u64 = net::wait_all(started).into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum();
    /// # Ok::<(), net::Error>(())
    /// ```
    pub fn spawn<A: Serialize, R: DeserializeOwned>(&self, function: &str, args: A) -> Pending<R> {
        Pending::start(self, function, &args, None)
    }
}

/// Calls `function` on `peer` with encoded `args`, checking `contract` on the other side.
pub(crate) fn call<A: Serialize + ?Sized, R: DeserializeOwned>(
    peer: &Peer,
    function: &str,
    args: &A,
    contract: Option<ContractRef<'_>>,
) -> Result<R, Error> {
    // A peer discovery found to be app-net's takes JSON at once.
    if peer.appnet {
        return call_json(peer.target(), peer, function, args);
    }
    let target = CallTargetRef::Peer(&peer.id);
    let reply = host::call(&request(target, function, args, contract)?);
    let reply: CallReplyRef = codec::decode_borrowed(&reply)?;
    match reply.outcome {
        OutcomeRef::Error(Error::AppNetPeer { .. }) => {
            call_json(peer.target(), peer, function, args)
        }
        outcome => resolve(outcome, peer, function),
    }
}

/// A call of `function` on the app-net peer `peer` (at `target`), with the arguments and the
/// result in JSON, as app-net takes them.
fn call_json<A: Serialize + ?Sized, R: DeserializeOwned>(
    target: CallTarget,
    peer: &Peer,
    function: &str,
    args: &A,
) -> Result<R, Error> {
    let request = json_request(target, function, args)?;
    let reply = host::call(&codec::encode(&request)?);
    let reply: CallReplyRef = codec::decode_borrowed(&reply)?;
    resolve_json(reply.outcome, peer, function)
}

/// The request of a call of `function` with `args` in JSON on `target` (an app-net peer): the
/// tuple of the arguments is a JSON array, `()` none.
pub(crate) fn json_request<A: Serialize + ?Sized>(
    target: CallTarget,
    function: &str,
    args: &A,
) -> Result<CallRequest, Error> {
    let bad = |message: String| Error::BadArguments {
        function: function.to_string(),
        message,
    };
    let args = match serde_json::to_value(args).map_err(|e| bad(e.to_string()))? {
        serde_json::Value::Null => serde_json::Value::Array(Vec::new()),
        array @ serde_json::Value::Array(_) => array,
        one => serde_json::Value::Array(vec![one]),
    };
    Ok(CallRequest {
        target,
        function: function.to_string(),
        args: serde_json::to_vec(&args).map_err(|e| bad(e.to_string()))?,
        contract: None,
        timeout_ms: None,
        json: true,
    })
}

/// [`resolve`] for a JSON call: the value is read from JSON with the caller's types.
pub(crate) fn resolve_json<R: DeserializeOwned>(
    outcome: OutcomeRef<'_>,
    peer: &Peer,
    function: &str,
) -> Result<R, Error> {
    match outcome {
        OutcomeRef::Value(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::Codec {
            message: format!(
                "cannot read the JSON result of {function} from app-net peer {} as the type expected here: {e}",
                peer.display_name()
            ),
        }),
        outcome => resolve(outcome, peer, function),
    }
}

/// The encoded request of a call of `function` with `args` on `target` (the arguments encoded
/// straight into it).
pub(crate) fn request<A: Serialize + ?Sized>(
    target: CallTargetRef<'_>,
    function: &str,
    args: &A,
    contract: Option<ContractRef<'_>>,
) -> Result<Vec<u8>, Error> {
    let encode = || CallRequest::encode_with_args(target, function, args, contract, None, false);
    Ok(blob::sending(host::blob_out, encode)?)
}

/// Turns an outcome into the caller's result; flags are resolved here, on the caller's side.
pub(crate) fn resolve<R: DeserializeOwned>(
    outcome: OutcomeRef<'_>,
    peer: &Peer,
    function: &str,
) -> Result<R, Error> {
    match outcome {
        OutcomeRef::Value(bytes) => blob::receiving(host::blob_in, || codec::decode(bytes))
            .map_err(|e| Error::Codec {
                message: format!(
                    "cannot decode the result of {function} from peer {}: {e}",
                    peer.display_name()
                ),
            }),
        OutcomeRef::Flag(name) if name == flag::NULL => {
            let null = codec::encode(flag::NULL_VALUE)?;
            codec::decode(&null).map_err(|_| Error::Codec {
                message: format!(
                    "{function} on peer {} answered the NULL flag, which resolves to the string \"NULL\"; the result type expected here cannot hold it",
                    peer.display_name()
                ),
            })
        }
        OutcomeRef::Flag(name) => Err(Error::UnknownFlag {
            peer: peer.display_name(),
            function: function.to_string(),
            flag: name,
        }),
        OutcomeRef::Error(e) => Err(e),
    }
}

/// Builder methods for [`PeerQuery`], as an alternative to a struct literal.
///
/// ```
/// use net::{PeerQuery, PeerQueryExt};
///
/// let query = PeerQuery::default().on_host().in_group("workers").hubs_only();
/// assert_eq!(
///     query,
///     PeerQuery {
///         on_host: true,
///         groups: vec!["workers".into()],
///         hubs_only: true,
///         ..Default::default()
///     }
/// );
/// ```
pub trait PeerQueryExt: sealed::Sealed + Sized {
    /// Only peers on this peer's host.
    ///
    /// ```
    /// use net::{PeerQuery, PeerQueryExt};
    /// assert!(PeerQuery::default().on_host().on_host);
    /// ```
    fn on_host(self) -> Self;

    /// Also peers in group `name` (no group at all means every group).
    ///
    /// ```
    /// use net::{PeerQuery, PeerQueryExt};
    /// let query = PeerQuery::default().in_group("a").in_group("b");
    /// assert_eq!(query.groups, ["a", "b"]);
    /// ```
    fn in_group(self, name: impl Into<String>) -> Self;

    /// Only hubs.
    ///
    /// ```
    /// use net::{PeerQuery, PeerQueryExt};
    /// assert!(PeerQuery::default().hubs_only().hubs_only);
    /// ```
    fn hubs_only(self) -> Self;

    /// Rescan instead of answering from the peer's cache.
    ///
    /// ```
    /// use net::{PeerQuery, PeerQueryExt};
    /// assert!(PeerQuery::default().refresh().refresh);
    /// ```
    fn refresh(self) -> Self;
}

impl PeerQueryExt for PeerQuery {
    fn on_host(self) -> Self {
        PeerQuery {
            on_host: true,
            ..self
        }
    }

    fn in_group(mut self, name: impl Into<String>) -> Self {
        self.groups.push(name.into());
        self
    }

    fn hubs_only(self) -> Self {
        PeerQuery {
            hubs_only: true,
            ..self
        }
    }

    fn refresh(self) -> Self {
        PeerQuery {
            refresh: true,
            ..self
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for netrun_abi::PeerQuery {}
}

/// The peers a query finds; never this peer. Empty `groups` means every group.
///
/// ```no_run
/// use net::PeerQuery;
/// let hubs = net::peers(PeerQuery { on_host: true, hubs_only: true, ..Default::default() })?;
/// # Ok::<(), net::Error>(())
/// ```
pub fn peers(query: PeerQuery) -> Result<Vec<Peer>, Error> {
    let found: Result<Vec<PeerInfo>, Error> = codec::decode(&host::peers(&codec::encode(&query)?))?;
    Ok(found?.into_iter().map(Peer::from).collect())
}

/// The peers in group `name`; never this peer.
///
/// ```no_run
/// let mine = net::peer_group(&net::this_peer().group)?;
/// # Ok::<(), net::Error>(())
/// ```
pub fn peer_group(name: &str) -> Result<Vec<Peer>, Error> {
    peers(PeerQuery {
        groups: vec![name.to_string()],
        ..Default::default()
    })
}

/// This peer.
///
/// ```no_run
/// println!("I am {}", net::this_peer().id);
/// ```
pub fn this_peer() -> Peer {
    static ME: std::sync::OnceLock<Peer> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let info: PeerInfo =
            codec::decode(&host::this_peer()).expect("the host describes this peer");
        Peer::from(info)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::from_id(&peer_id::encode("127.0.0.1", 3010, "None")).unwrap()
    }

    #[test]
    fn null_flag_resolves_to_the_string_null() {
        let got: String = resolve(OutcomeRef::Flag("NULL".into()), &peer(), "null").unwrap();
        assert_eq!(got, "NULL");
        let err = resolve::<u32>(OutcomeRef::Flag("NULL".into()), &peer(), "null").unwrap_err();
        assert!(err.to_string().contains("\"NULL\""), "{err}");
    }

    #[test]
    fn other_flags_are_unknown_and_name_themselves() {
        let err = resolve::<String>(OutcomeRef::Flag("BUSY".into()), &peer(), "f").unwrap_err();
        assert!(matches!(&err, Error::UnknownFlag { flag, .. } if flag == "BUSY"));
    }

    #[test]
    fn values_and_errors_pass_through() {
        let value = resolve::<u32>(
            OutcomeRef::Value(&codec::encode(&7u32).unwrap()),
            &peer(),
            "f",
        );
        assert_eq!(value.unwrap(), 7);
        let e = Error::Codec {
            message: "x".into(),
        };
        assert_eq!(
            resolve::<u32>(OutcomeRef::Error(e.clone()), &peer(), "f").unwrap_err(),
            e
        );
    }
}
