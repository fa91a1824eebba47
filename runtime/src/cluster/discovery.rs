//! Finding peers: probe every port of the range on a host, concurrently, with short timeouts.
//!
//! A probe is a handshake: a peer answers with its id, group and hub flag, so finding a peer
//! costs one round trip and no call. Results are cached; a query with `refresh`, an empty
//! cache, or a cache older than [`CACHE_TTL`] rescans. Owns scanning and filtering; it never
//! calls functions.

use std::ops::Range;
use std::time::{Duration, Instant};

use netrun_abi::{PeerInfo, PeerQuery, peer_id};

use crate::wire::connection;
use crate::wire::message::Hello;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a scan's result answers queries without `refresh`.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Frame limit for probes: a hello is small.
const PROBE_MAX_FRAME: usize = 64 * 1024;

/// Scans one host's port range.
pub struct Discovery {
    host: String,
    ports: Range<u16>,
    /// This peer's own port, skipped (a peer never lists itself).
    own_port: Option<u16>,
    cache: tokio::sync::Mutex<Option<(Instant, Vec<PeerInfo>)>>,
}

impl Discovery {
    /// Discovery of the peers on `host` at `ports`, not counting the one at `own_port`.
    pub fn new(host: &str, ports: Range<u16>, own_port: Option<u16>) -> Discovery {
        Discovery {
            host: host.to_string(),
            ports,
            own_port,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// The peers matching `query`, from the cache when it is fresh.
    pub async fn peers(&self, query: &PeerQuery) -> Vec<PeerInfo> {
        let mut cache = self.cache.lock().await;
        let fresh = cache
            .as_ref()
            .filter(|(at, found)| !query.refresh && !found.is_empty() && at.elapsed() < CACHE_TTL);
        let found = match fresh {
            Some((_, found)) => found.clone(),
            None => {
                let found = self.scan().await;
                *cache = Some((Instant::now(), found.clone()));
                found
            }
        };
        filter(found, query)
    }

    /// Probes every port of the range at once; returns the peers that answered, by port.
    pub async fn scan(&self) -> Vec<PeerInfo> {
        let mut probes = tokio::task::JoinSet::new();
        for port in self.ports.clone().filter(|p| Some(*p) != self.own_port) {
            let address = crate::wire::client::socket_address(&self.host, port);
            probes.spawn(async move { probe(&address).await });
        }
        let mut found = Vec::new();
        while let Some(result) = probes.join_next().await {
            if let Ok(Some(peer)) = result {
                found.push(peer);
            }
        }
        found.sort_by_key(|p| p.port);
        found
    }
}

/// Shakes hands with whatever listens at `address`; a netrun peer answers with who it is.
pub async fn probe(address: &str) -> Option<PeerInfo> {
    let (_, _, hello) = connection::connect(
        address,
        &Hello::client(PROBE_MAX_FRAME),
        PROBE_TIMEOUT,
        PROBE_MAX_FRAME,
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
    })
}

/// Keeps the peers a query asks for. Everything found is on this host for now, so `on_host`
/// removes nothing.
pub fn filter(peers: Vec<PeerInfo>, query: &PeerQuery) -> Vec<PeerInfo> {
    peers
        .into_iter()
        .filter(|p| query.groups.is_empty() || query.groups.contains(&p.group))
        .filter(|p| !query.hubs_only || p.hub)
        .collect()
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
        }
    }

    #[test]
    fn filters_by_group_and_hub() {
        let all = vec![peer(1, "a", true), peer(2, "a", false), peer(3, "b", false)];
        let ports = |q: PeerQuery| {
            filter(all.clone(), &q)
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
