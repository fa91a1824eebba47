//! Peer ids: standard base64 of `"host:port -> group"`, exactly as the original app-net.
//!
//! `MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ==` is `192.168.2.24:3010 -> None`. The id carries the
//! address, so calling an id needs no lookup. [`PeerAddress`] is the one place that spells the
//! readable form: its `Display` is what error messages and logs name a peer by.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The group of a peer that was given none, as in the original.
pub const DEFAULT_GROUP: &str = "None";

/// What a peer id says: where the peer listens and which group it is in. Displays as
/// `host:port -> group`.
///
/// ```
/// let address = netrun_abi::peer_id::PeerAddress::new("192.168.2.24", 3010, "None");
/// assert_eq!(address.to_string(), "192.168.2.24:3010 -> None");
/// assert_eq!(address.id(), "MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ==");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    pub host: String,
    pub port: u16,
    pub group: String,
}

impl PeerAddress {
    pub fn new(host: impl Into<String>, port: u16, group: impl Into<String>) -> PeerAddress {
        PeerAddress {
            host: host.into(),
            port,
            group: group.into(),
        }
    }

    /// The peer id: base64 of the display form.
    pub fn id(&self) -> String {
        STANDARD.encode(self.to_string())
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} -> {}", self.host, self.port, self.group)
    }
}

/// Why a string is not a peer id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id:?} is not a peer id: {reason}")]
pub struct InvalidPeerId {
    pub id: String,
    pub reason: String,
}

/// Encodes a peer id.
pub fn encode(host: &str, port: u16, group: &str) -> String {
    PeerAddress::new(host, port, group).id()
}

/// Decodes a peer id into its address and group.
pub fn decode(id: &str) -> Result<PeerAddress, InvalidPeerId> {
    let fail = |reason: &str| InvalidPeerId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    let raw = STANDARD.decode(id.trim()).map_err(|_| fail("not base64"))?;
    let text = String::from_utf8(raw).map_err(|_| fail("not UTF-8 inside"))?;
    let (address, group) = text
        .split_once(" -> ")
        .ok_or_else(|| fail("expected \"host:port -> group\" inside"))?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| fail("expected \"host:port\" before \" -> \""))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| fail("port is not a number from 0 to 65535"))?;
    if host.is_empty() || group.is_empty() {
        return Err(fail("empty host or group"));
    }
    Ok(PeerAddress {
        host: host.to_string(),
        port,
        group: group.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_original_example() {
        assert_eq!(
            encode("192.168.2.24", 3010, "None"),
            "MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ=="
        );
        let address = decode("MTkyLjE2OC4yLjI0OjMwMTAgLT4gTm9uZQ==").unwrap();
        assert_eq!(
            address,
            PeerAddress {
                host: "192.168.2.24".into(),
                port: 3010,
                group: "None".into()
            }
        );
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(decode("not base64!").unwrap_err().reason.contains("base64"));
        let no_arrow = STANDARD.encode("127.0.0.1:3010");
        assert!(decode(&no_arrow).unwrap_err().reason.contains("->"));
        let bad_port = STANDARD.encode("127.0.0.1:99999 -> None");
        assert!(decode(&bad_port).unwrap_err().reason.contains("port"));
    }
}
