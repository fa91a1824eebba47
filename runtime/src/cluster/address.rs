//! Which address a peer advertises: the one in its id, its `info` and every listing, the one
//! other peers dial.
//!
//! A peer bound to one address advertises it. A peer bound to every interface (`0.0.0.0` or
//! `::`) advertises `--advertise` if given; else the address of the interface its route to the
//! first seed leaves by (found by connecting a UDP socket, which sends nothing); else the
//! first interface address of its family that is not loopback. Nothing here sends a packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The address to advertise for a peer bound to `host`.
pub fn advertised(host: IpAddr, advertise: Option<IpAddr>, seeds: &[String]) -> IpAddr {
    if let Some(advertise) = advertise {
        return advertise;
    }
    if !host.is_unspecified() {
        return host;
    }
    let toward_seed = seeds.iter().find_map(|seed| {
        let seed: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(seed)
            .ok()?
            .find(|addr| addr.is_ipv4() == host.is_ipv4())?;
        local_address_toward(seed)
    });
    if let Some(address) = toward_seed {
        return address;
    }
    if let Some(address) = first_interface_address(host.is_ipv4()) {
        return address;
    }
    tracing::warn!(
        "bound to {host} but no interface has an address to advertise; advertising loopback (use --advertise)"
    );
    if host.is_ipv4() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    }
}

/// The local address of the route to `to`.
fn local_address_toward(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).ok()?;
    socket.connect(to).ok()?;
    let local = socket.local_addr().ok()?.ip();
    (!local.is_unspecified()).then_some(local)
}

/// The first address of an interface that is up, not loopback, of the family asked for.
fn first_interface_address(ipv4: bool) -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .filter(|interface| !interface.is_loopback())
        .map(|interface| interface.ip())
        .find(|ip| ip.is_ipv4() == ipv4 && !ip.is_unspecified())
}

/// Whether a peer bound to `host` talks beyond this machine (and so may multicast on the LAN).
pub fn beyond_loopback(host: IpAddr) -> bool {
    !host.is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_or_given_address_is_advertised_as_it_is() {
        let lan: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(advertised(lan, None, &[]), lan);
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(advertised(any, Some(lan), &[]), lan);
    }

    #[test]
    fn every_interface_advertises_a_real_address() {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        assert!(!advertised(any, None, &[]).is_unspecified());
        // The route to a loopback seed leaves by loopback.
        let toward = advertised(any, None, &["127.0.0.1:3010".to_string()]);
        assert_eq!(toward, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
