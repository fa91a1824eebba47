//! Who this peer is: its address and group, hub flag and module. One [`Identity`] per peer, from
//! which everything that describes the peer is derived: its handshake ([`Identity::hello`]),
//! what discovery and its guest see ([`Identity::info`]), and what `info` answers
//! ([`Identity::details`]).

use netrun_abi::names::{builtin, flag};
use netrun_abi::peer_id::PeerAddress;
use netrun_abi::{PeerDetails, PeerInfo};

use crate::guest::module::Manifest;
use crate::wire::message::{Hello, PROTOCOL_VERSION, RUNTIME_VERSION};

/// This peer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Where it listens and its group; displays as `host:port -> group`.
    pub address: PeerAddress,
    /// The peer id, base64 of the address.
    pub id: String,
    pub hub: bool,
    /// SHA-256 of the module, hex.
    pub module_hash: String,
    /// Whether it serves app-net peers (and looks for them).
    pub appnet: bool,
}

impl Identity {
    pub fn new(address: PeerAddress, hub: bool, module_hash: String) -> Identity {
        Identity {
            id: address.id(),
            address,
            hub,
            module_hash,
            appnet: false,
        }
    }

    /// The same peer, serving app-net peers or not.
    pub fn with_appnet(self, appnet: bool) -> Identity {
        Identity { appnet, ..self }
    }

    /// What this peer says first on every connection, calling or answering, accepting frames
    /// up to `max_frame` bytes.
    pub fn hello(&self, max_frame: usize) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            peer_id: Some(self.id.clone()),
            group: self.address.group.clone(),
            hub: self.hub,
            module_hash: self.module_hash.clone(),
            runtime_version: RUNTIME_VERSION.to_string(),
            max_frame: max_frame as u64,
        }
    }

    /// This peer as discovery and its guest (`net::this_peer`) see it.
    pub fn info(&self) -> PeerInfo {
        PeerInfo {
            id: self.id.clone(),
            host: self.address.host.clone(),
            port: self.address.port,
            group: self.address.group.clone(),
            hub: self.hub,
            appnet: false,
        }
    }

    /// What `info` answers for a peer serving `manifest`, with empty subscription lists (they
    /// change; the router fills them in).
    pub fn details(&self, manifest: &Manifest) -> PeerDetails {
        let mut flags: Vec<String> = manifest.flags.keys().cloned().collect();
        flags.extend([flag::INVALID_CONNECTION.to_string(), flag::NULL.to_string()]);
        flags.sort();
        flags.dedup();
        PeerDetails {
            tag: self.id.clone(),
            host: self.address.host.clone(),
            port: self.address.port,
            group: self.address.group.clone(),
            hub: self.hub,
            connections: connections(manifest),
            events: manifest.events.keys().cloned().collect(),
            subscribers: Vec::new(),
            subscriptions: Vec::new(),
            flags,
            module_hash: self.module_hash.clone(),
            runtime_version: RUNTIME_VERSION.to_string(),
            appnet: self.appnet,
        }
    }
}

/// Every connection a peer serving `manifest` answers, sorted: the module's functions and the
/// built-ins.
pub fn connections(manifest: &Manifest) -> Vec<String> {
    let mut all: Vec<String> = manifest.functions.keys().cloned().collect();
    all.extend(builtin::ALL.iter().map(|s| s.to_string()));
    all.sort();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_info_and_details_describe_the_same_peer() {
        let identity = Identity::new(PeerAddress::new("127.0.0.1", 3011, "g"), true, "ab".into());
        let hello = identity.hello(4096);
        let info = identity.info();
        let details = identity.details(&Manifest::default());
        assert_eq!(
            identity.id,
            netrun_abi::peer_id::encode("127.0.0.1", 3011, "g")
        );
        assert_eq!(hello.peer_id.as_deref(), Some(identity.id.as_str()));
        assert_eq!((hello.group.as_str(), hello.hub), ("g", true));
        assert_eq!((hello.module_hash.as_str(), hello.max_frame), ("ab", 4096));
        assert_eq!(
            (
                info.id.as_str(),
                info.host.as_str(),
                info.port,
                info.group.as_str(),
                info.hub
            ),
            (identity.id.as_str(), "127.0.0.1", 3011, "g", true)
        );
        assert_eq!(
            (
                details.tag.as_str(),
                details.port,
                details.hub,
                details.module_hash.as_str()
            ),
            (identity.id.as_str(), 3011, true, "ab")
        );
        assert_eq!(details.connections, builtin::ALL);
        assert_eq!(details.flags, [flag::INVALID_CONNECTION, flag::NULL]);
    }
}
