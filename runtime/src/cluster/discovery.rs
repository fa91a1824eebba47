//! Finding peers: this host's port range, the cluster's membership, and what seeds list.
//!
//! - The host scan probes every port of the range on this peer's (advertised) host at once,
//!   with short timeouts. A probe is a handshake: a peer answers with its id, group and hub
//!   flag, so finding a peer costs one round trip and no call. Its result is cached; a query
//!   with `refresh`, an empty cache, or a cache older than [`CACHE_TTL`] rescans.
//! - The membership ([`crate::cluster::membership`]) adds the members its failure detector
//!   holds alive, on other hosts too. It is always fresh.
//! - For a client that is not a peer (the CLI): seeds (`--seed`), the peers found on this
//!   host and, bound beyond loopback, those found over mDNS within a second, are each asked
//!   what they list (built-in `members`): one live peer is enough to list the cluster as its
//!   failure detector sees it.
//!
//! Owns merging and filtering; it never calls functions but `members`.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netrun_abi::names::builtin;
use netrun_abi::{Outcome, PeerInfo, PeerQuery, codec, peer_id};

use crate::cluster::lan::Lan;
use crate::cluster::membership::Membership;
use crate::wire::appnet;
use crate::wire::client::{Client, Request, Target};
use crate::wire::connection;
use crate::wire::message::{CallKind, Encoding, Hello};
use crate::wire::secure::ClusterKey;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a scan's result answers queries without `refresh`.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How long the CLI listens for peers on the LAN.
const LAN_WINDOW: Duration = Duration::from_secs(1);
/// How long a peer asked what it lists may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// Frame limit for probes: a hello is small.
const PROBE_MAX_FRAME: usize = 64 * 1024;

/// `NET_PORT..NET_PORT + NET_PORT_RANGE`, as in app-net (5 ports by default), clamped at 65535.
pub fn port_range(start: u16, count: u16) -> Range<u16> {
    start..start.saturating_add(count)
}

/// Where a peer (or a client) looks for peers.
pub struct Discovery {
    /// The host whose port range is scanned: this peer's advertised address.
    host: String,
    ports: Range<u16>,
    /// This peer's own port, skipped (a peer never lists itself).
    own_port: Option<u16>,
    cache: tokio::sync::Mutex<Option<(Instant, Vec<PeerInfo>)>>,
    /// The cluster as this peer's failure detector sees it.
    membership: Option<Arc<Membership>>,
    /// For a client that is not a peer: how it asks peers what they list.
    client: Option<Arc<Client>>,
    /// Peers to ask what they list.
    seeds: Vec<String>,
    /// The bound address on whose interfaces to look for peers over mDNS (a peer's membership
    /// does that for it).
    lan: Option<std::net::IpAddr>,
    /// The cluster secret's keys, to probe with: a peer without the secret is not found.
    key: Option<ClusterKey>,
    /// With app-net on: the client that notes the app-net peers found, so that calls to them
    /// go in app-net's format.
    appnet: Option<Arc<Client>>,
}

impl Discovery {
    /// Discovery of the peers on `host` at `ports`, not counting the one at `own_port`.
    pub fn new(host: &str, ports: Range<u16>, own_port: Option<u16>) -> Discovery {
        Discovery {
            host: host.to_string(),
            ports,
            own_port,
            cache: tokio::sync::Mutex::new(None),
            membership: None,
            client: None,
            seeds: Vec::new(),
            lan: None,
            key: None,
            appnet: None,
        }
    }

    /// Also finds app-net (Python) peers, and notes them in `client`.
    pub fn with_appnet(mut self, client: Arc<Client>) -> Discovery {
        self.appnet = Some(client);
        self
    }

    /// Probes (and, for a client, asks) with the cluster secret's keys.
    pub fn with_key(mut self, key: Option<ClusterKey>) -> Discovery {
        self.key = key;
        self
    }

    /// Discovery for a client that is not a peer (the CLI), which asks peers what they list
    /// with `client`.
    pub fn for_client(host: &str, ports: Range<u16>, client: Arc<Client>) -> Discovery {
        Discovery {
            client: Some(client),
            ..Discovery::new(host, ports, None)
        }
    }

    /// Also lists the members `membership` holds alive.
    pub fn with_membership(mut self, membership: Arc<Membership>) -> Discovery {
        self.membership = Some(membership);
        self
    }

    /// Also lists what `seeds` list (a client's discovery).
    pub fn with_seeds(mut self, seeds: Vec<String>) -> Discovery {
        self.seeds = seeds;
        self
    }

    /// Also lists what the peers found over mDNS on the interfaces of `bound` list (themselves
    /// included), when that is beyond loopback (a client's discovery).
    pub fn with_lan(mut self, bound: std::net::IpAddr) -> Discovery {
        if crate::cluster::address::beyond_loopback(bound) {
            self.lan = Some(bound);
        }
        self
    }

    /// The peers matching `query`: the host scan (from the cache when it is fresh), the
    /// membership's live members and what the seeds list, each peer once.
    pub async fn peers(&self, query: &PeerQuery) -> Vec<PeerInfo> {
        let mut found = self.scanned(query.refresh).await;
        if let Some(membership) = &self.membership {
            found.extend(membership.alive());
        }
        if let Some(client) = &self.client {
            // Any live peer lists the cluster as its failure detector sees it: ask the seeds,
            // the peers found on the LAN, and those found on this host.
            let mut asked = resolve(&self.seeds).await;
            if let Some(bound) = self.lan {
                asked.extend(look_on_lan(bound).await);
            }
            asked.extend(found.iter().filter(|p| !p.appnet).filter_map(|p| {
                let ip = p.host.parse::<std::net::IpAddr>().ok()?;
                Some(SocketAddr::new(ip, p.port))
            }));
            asked.sort();
            asked.dedup();
            found.extend(ask_members(asked, client).await);
        }
        let own = self
            .own_port
            .map(|port| crate::wire::client::socket_address(&self.host, port));
        let mut seen = std::collections::HashSet::new();
        found.retain(|p| {
            Some(crate::wire::client::socket_address(&p.host, p.port)) != own
                && seen.insert(p.id.clone())
        });
        self.filter(found, query)
    }

    /// The host scan, from the cache unless `refresh` (or it is empty or stale).
    async fn scanned(&self, refresh: bool) -> Vec<PeerInfo> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .as_ref()
            .filter(|(at, found)| !refresh && !found.is_empty() && at.elapsed() < CACHE_TTL);
        match fresh {
            Some((_, found)) => found.clone(),
            None => {
                let found = self.scan().await;
                *cache = Some((Instant::now(), found.clone()));
                found
            }
        }
    }

    /// Shakes hands with whatever listens at `address`, as [`probe`] does with this discovery's
    /// keys.
    pub async fn probe(&self, address: &str) -> Option<PeerInfo> {
        let found = probe(address, self.key.as_ref(), self.appnet.is_some()).await?;
        self.note(&found);
        Some(found)
    }

    /// Notes an app-net peer found in the client that calls it.
    fn note(&self, peer: &PeerInfo) {
        if peer.appnet
            && let Some(client) = &self.appnet
        {
            client.mark_appnet(&crate::wire::client::socket_address(&peer.host, peer.port));
        }
    }

    /// Probes every port of the range at once; returns the peers that answered, by port.
    pub async fn scan(&self) -> Vec<PeerInfo> {
        let mut probes = tokio::task::JoinSet::new();
        for port in self.ports.clone().filter(|p| Some(*p) != self.own_port) {
            let address = crate::wire::client::socket_address(&self.host, port);
            let (key, appnet) = (self.key.clone(), self.appnet.is_some());
            probes.spawn(async move { probe(&address, key.as_ref(), appnet).await });
        }
        let mut found = Vec::new();
        while let Some(result) = probes.join_next().await {
            if let Ok(Some(peer)) = result {
                self.note(&peer);
                found.push(peer);
            }
        }
        found.sort_by_key(|p| p.port);
        found
    }

    /// Keeps the peers a query asks for. `on_host` keeps those at this host's address (or at
    /// loopback).
    pub fn filter(&self, peers: Vec<PeerInfo>, query: &PeerQuery) -> Vec<PeerInfo> {
        peers
            .into_iter()
            .filter(|p| query.groups.is_empty() || query.groups.contains(&p.group))
            .filter(|p| !query.hubs_only || p.hub)
            .filter(|p| !query.on_host || self.is_on_host(&p.host))
            .collect()
    }

    fn is_on_host(&self, host: &str) -> bool {
        host == self.host
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// The addresses of peers found over mDNS on the interfaces of `bound` within [`LAN_WINDOW`].
async fn look_on_lan(bound: std::net::IpAddr) -> Vec<SocketAddr> {
    let looked = tokio::task::spawn_blocking(move || {
        let lan = Lan::on(bound)?;
        let found = lan.look(LAN_WINDOW);
        lan.stop();
        Ok::<_, String>(found)
    })
    .await;
    match looked {
        Ok(Ok(addresses)) => addresses,
        Ok(Err(e)) => {
            tracing::warn!("{e}");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!("the LAN lookup failed: {e}");
            Vec::new()
        }
    }
}

/// Every address the `seeds` resolve to (a name may stand for several).
async fn resolve(seeds: &[String]) -> Vec<SocketAddr> {
    let mut addresses = Vec::new();
    for seed in seeds {
        match tokio::net::lookup_host(seed.as_str()).await {
            Ok(resolved) => addresses.extend(resolved),
            Err(e) => tracing::warn!("seed {seed}: cannot resolve it: {e}"),
        }
    }
    addresses
}

/// What the peers at `addresses` list (built-in `members`: each itself, then the others),
/// asked at once; one that does not answer adds nothing.
async fn ask_members(addresses: Vec<SocketAddr>, client: &Arc<Client>) -> Vec<PeerInfo> {
    let mut asked = tokio::task::JoinSet::new();
    for address in addresses {
        let Ok(target) = Target::parse(&address.to_string()) else {
            continue;
        };
        let client = client.clone();
        asked.spawn(async move {
            let request = Request {
                kind: CallKind::Function,
                chain: None,
                function: builtin::MEMBERS,
                encoding: Encoding::Bincode,
                args: codec::encode(&()).unwrap_or_default(),
                contract: None,
            };
            match client.call(&target, request, ASK_TIMEOUT).await {
                Outcome::Value(bytes) => codec::decode_untrusted::<Vec<PeerInfo>>(&bytes).ok(),
                other => {
                    tracing::debug!("{} does not say what it lists: {other:?}", target.display);
                    None
                }
            }
        });
    }
    let mut found = Vec::new();
    while let Some(answer) = asked.join_next().await {
        if let Ok(Some(peers)) = answer {
            found.extend(peers);
        }
    }
    found
}

/// Asks whatever listens at `address` who it is. With `appnet`, app-net's `info` first: app-net
/// peers and the netrun peers serving app-net answer it. Else (or when the answer is not
/// app-net's) a handshake, secured with `key`: a netrun peer answers with who it is.
pub async fn probe(address: &str, key: Option<&ClusterKey>, appnet: bool) -> Option<PeerInfo> {
    if appnet {
        match probe_appnet(address).await {
            AppNetProbe::Found(peer) => return Some(peer),
            AppNetProbe::Nobody => return None,
            AppNetProbe::NotAppNet => {}
        }
    }
    let (_, _, hello) = connection::connect(
        address,
        &Hello::client(PROBE_MAX_FRAME),
        PROBE_TIMEOUT,
        PROBE_MAX_FRAME,
        key,
    )
    .await
    .ok()?;
    let id = hello.peer_id?;
    let decoded = peer_id::decode(&id).ok()?;
    Some(PeerInfo {
        id,
        host: decoded.host,
        port: decoded.port,
        group: hello.group,
        hub: hello.hub,
        appnet: false,
    })
}

/// What app-net's `info` found at an address.
enum AppNetProbe {
    Found(PeerInfo),
    /// Nothing listens, or it did not answer in time.
    Nobody,
    /// Something answered, but not app-net's `info`: a netrun peer not serving app-net.
    NotAppNet,
}

/// Asks app-net's `info` at `address`.
async fn probe_appnet(address: &str) -> AppNetProbe {
    let request = appnet::Request::new(appnet::builtin::INFO, Vec::new());
    let info = match appnet::call(address, &request, PROBE_TIMEOUT, PROBE_MAX_FRAME).await {
        Ok(appnet::Reply::Value(info)) => info,
        Ok(_) | Err(appnet::CallFailure::Lost(_)) => return AppNetProbe::NotAppNet,
        Err(_) => return AppNetProbe::Nobody,
    };
    match appnet_peer(&info) {
        Some(peer) => AppNetProbe::Found(peer),
        None => AppNetProbe::NotAppNet,
    }
}

/// The peer app-net's `info` describes; a netrun peer says so in `runtime`.
fn appnet_peer(info: &serde_json::Value) -> Option<PeerInfo> {
    let host = info.get("host")?.as_str()?;
    let port = u16::try_from(info.get("port")?.as_u64()?).ok()?;
    let group = info.get("group")?.as_str()?;
    let runtime = info.get("runtime").and_then(|r| r.as_str()).unwrap_or("");
    Some(PeerInfo {
        id: peer_id::encode(host, port, group),
        host: host.to_string(),
        port,
        group: group.to_string(),
        hub: info.get("hub")?.as_bool()?,
        appnet: !runtime.starts_with("netrun "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16, group: &str, hub: bool) -> PeerInfo {
        PeerInfo {
            id: peer_id::encode("127.0.0.1", port, group),
            host: "127.0.0.1".into(),
            port,
            group: group.into(),
            hub,
            appnet: false,
        }
    }

    #[test]
    fn filters_by_group_and_hub() {
        let all = vec![peer(1, "a", true), peer(2, "a", false), peer(3, "b", false)];
        let discovery = Discovery::new("127.0.0.1", 1..4, None);
        let ports = |q: PeerQuery| {
            discovery
                .filter(all.clone(), &q)
                .iter()
                .map(|p| p.port)
                .collect::<Vec<_>>()
        };
        assert_eq!(ports(PeerQuery::default()), [1, 2, 3]);
        assert_eq!(
            ports(PeerQuery {
                groups: vec!["b".into()],
                ..Default::default()
            }),
            [3]
        );
        assert_eq!(
            ports(PeerQuery {
                hubs_only: true,
                ..Default::default()
            }),
            [1]
        );
        let none = PeerQuery {
            groups: vec!["b".into()],
            hubs_only: true,
            ..Default::default()
        };
        assert!(ports(none).is_empty());
    }
}
