//! LAN discovery over multicast DNS-SD (the `mdns-sd` crate): each peer bound beyond loopback
//! publishes `_netrun._tcp` with TXT records for its group, hub flag and module hash, and
//! browses for the others, on the interfaces it is bound to only. Peers show up in
//! `avahi-browse -r _netrun._tcp`.
//!
//! An mDNS record is a hint, not proof of life (caches keep a dead peer's record for minutes):
//! a peer hands what it finds to its membership, whose failure detector decides who is listed;
//! the CLI probes what it finds before listing it. A peer on loopback uses none of this, so
//! nothing on loopback ever multicasts.
//!
//! Owns the mDNS daemon (a thread of its own), the published record and the browser. It does
//! not decide who is alive.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

/// The DNS-SD service type of netrun peers.
pub const SERVICE_TYPE: &str = "_netrun._tcp.local.";

/// An mDNS daemon on the interfaces of one bound address.
pub struct Lan {
    daemon: ServiceDaemon,
    /// The full name of the record this peer published, if it did.
    published: Option<String>,
}

impl Lan {
    /// An mDNS daemon on the interfaces of `bound`: that interface for an address, every
    /// interface but loopback for `0.0.0.0` or `::`.
    pub fn on(bound: IpAddr) -> Result<Lan, String> {
        let daemon = ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
        let only = if bound.is_unspecified() {
            daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
        } else {
            daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::Addr(bound)))
        };
        only.map_err(|e| format!("cannot choose the mDNS interfaces: {e}"))?;
        Ok(Lan {
            daemon,
            published: None,
        })
    }

    /// Publishes this peer: at `address`, with its group, hub flag and module hash.
    pub fn publish(
        &mut self,
        address: SocketAddr,
        group: &str,
        hub: bool,
        module_hash: &str,
    ) -> Result<(), String> {
        let ip = address.ip();
        let instance = format!("netrun {ip} {}", address.port());
        let host = format!("netrun-{}.local.", ip.to_string().replace([':', '.'], "-"));
        let properties = [
            ("group", group),
            ("hub", if hub { "yes" } else { "no" }),
            ("module", module_hash),
        ];
        let record = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            ip,
            address.port(),
            &properties[..],
        )
        .map_err(|e| format!("cannot describe this peer for mDNS: {e}"))?;
        let fullname = record.get_fullname().to_string();
        self.daemon
            .register(record)
            .map_err(|e| format!("cannot publish this peer over mDNS: {e}"))?;
        self.published = Some(fullname);
        Ok(())
    }

    /// Hands the address of every peer found on the LAN to `found`, on a thread of its own,
    /// for as long as the daemon runs.
    pub fn browse(&self, found: impl Fn(SocketAddr) + Send + 'static) -> Result<(), String> {
        let events = self
            .daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| format!("cannot browse mDNS: {e}"))?;
        std::thread::Builder::new()
            .name("netrun-lan".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    for address in addresses(&event) {
                        found(address);
                    }
                }
            })
            .map_err(|e| format!("cannot start the LAN browser: {e}"))?;
        Ok(())
    }

    /// The addresses of the peers found within `window`, each once.
    pub fn look(&self, window: Duration) -> Vec<SocketAddr> {
        let Ok(events) = self.daemon.browse(SERVICE_TYPE) else {
            return Vec::new();
        };
        let deadline = Instant::now() + window;
        let mut found = HashSet::new();
        while let Ok(event) = events.recv_deadline(deadline) {
            found.extend(addresses(&event));
        }
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        found.into_iter().collect()
    }

    /// Withdraws this peer's record (it says goodbye on the LAN) and stops the daemon.
    pub fn stop(self) {
        if let Some(fullname) = &self.published
            && let Ok(done) = self.daemon.unregister(fullname)
        {
            let _ = done.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

/// The addresses a resolved record gives (none for other events).
fn addresses(event: &ServiceEvent) -> Vec<SocketAddr> {
    let ServiceEvent::ServiceResolved(service) = event else {
        return Vec::new();
    };
    service
        .get_addresses()
        .iter()
        .map(|ip| SocketAddr::new(ip.to_ip_addr(), service.get_port()))
        .collect()
}
