//! Membership beyond one host: who is in the cluster and alive, by SWIM gossip with a failure
//! detector (the `foca` crate), carried over UDP on the peer's own port number.
//!
//! A peer joins by announcing itself to a candidate: a seed (`--seed`, resolved again from
//! time to time, so a DNS name may stand for several peers), or a peer found on the LAN. From
//! one member it learns all the others, across routed subnets where multicast never reaches.
//! Each peer probes one member per period and gossips to a few, so its background traffic does
//! not grow with the cluster; a member that stops answering is suspected, then declared down
//! and dropped from [`Membership::alive`]. A peer that stops cleanly says so ([`Membership::leave`])
//! and leaves every listing at once; one that comes back under the same address wins over its
//! old self (a newer [`MemberId::run`]).
//!
//! Owns the SWIM state, its UDP socket and its timers. It does not call functions or decide
//! who to list: discovery reads [`Membership::alive`].

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use foca::{AccumulatingRuntime, Codec, Config, Foca, Header, Member, OwnedNotification, Timer};
use netrun_abi::peer_id::PeerAddress;
use netrun_abi::{PeerInfo, codec};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::wire::secure::ClusterKey;

/// How often seeds are resolved again and announced to.
pub const SEED_EVERY: Duration = Duration::from_secs(10);
/// The cluster size the failure detector's timings are tuned for.
const EXPECTED_MEMBERS: u32 = 64;
/// Largest gossip datagram.
const MAX_PACKET: usize = 1400;

/// A member of the cluster as the gossip knows it: where it listens, its group and hub flag,
/// and which run of the peer at that address it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub addr: SocketAddr,
    pub group: String,
    pub hub: bool,
    /// Larger for a later run (and for a renewed identity): it wins over earlier ones.
    pub run: u64,
}

impl MemberId {
    /// This peer, started now.
    pub fn new(addr: SocketAddr, group: &str, hub: bool) -> MemberId {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64);
        MemberId {
            addr,
            group: group.to_string(),
            hub,
            run,
        }
    }

    /// Stands for whoever listens at `addr` (a seed, a peer found on the LAN) until it answers
    /// with its real identity.
    fn candidate(addr: SocketAddr) -> MemberId {
        MemberId {
            addr,
            group: String::new(),
            hub: false,
            run: 0,
        }
    }

    /// The member as listings show it.
    pub fn info(&self) -> PeerInfo {
        let address = PeerAddress::new(self.addr.ip().to_string(), self.addr.port(), &*self.group);
        PeerInfo {
            id: address.id(),
            host: address.host,
            port: address.port,
            group: address.group,
            hub: self.hub,
            appnet: false,
        }
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            run: self.run.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.run > adversary.run
    }
}

/// Gossip messages in the project's one codec.
struct WireCodec;

impl WireCodec {
    fn put<T: Serialize>(value: &T, mut buf: impl BufMut) -> Result<(), codec::CodecError> {
        let bytes = codec::encode(value)?;
        if buf.remaining_mut() < bytes.len() {
            return Err(codec::CodecError::Encode(
                "no room left in the datagram".into(),
            ));
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    fn take<T: serde::de::DeserializeOwned>(mut buf: impl Buf) -> Result<T, codec::CodecError> {
        let (value, used) = codec::decode_prefix_untrusted(buf.chunk())?;
        buf.advance(used);
        Ok(value)
    }
}

impl Codec<MemberId> for WireCodec {
    type Error = codec::CodecError;

    fn encode_header(
        &mut self,
        header: &Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        WireCodec::put(header, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, Self::Error> {
        WireCodec::take(buf)
    }

    fn encode_member(
        &mut self,
        member: &Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        WireCodec::put(member, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, Self::Error> {
        WireCodec::take(buf)
    }
}

/// What the gossip task is asked to do.
enum Input {
    /// A datagram from another member.
    Data(Bytes),
    /// A timer the gossip asked for is due.
    Timer(Timer<MemberId>),
    /// Try to join through whoever listens at this address.
    Announce(SocketAddr),
    /// Tell the cluster this peer leaves; answer when said.
    Leave(oneshot::Sender<()>),
}

/// This peer's view of the cluster, kept by the gossip task.
#[derive(Default)]
struct View {
    /// Members held alive (or suspected, not yet down), by address.
    alive: BTreeMap<SocketAddr, MemberId>,
    /// Addresses of members declared down (until they come back).
    down: HashSet<SocketAddr>,
}

/// The cluster as this peer's failure detector sees it.
pub struct Membership {
    me: MemberId,
    input: mpsc::UnboundedSender<Input>,
    view: Arc<Mutex<View>>,
}

impl Membership {
    /// Starts gossiping as `me` on a UDP socket bound to `bind` (the peer's own port number),
    /// announcing to `seeds` now and every [`SEED_EVERY`]. `on_down` is told the address of
    /// every member declared down.
    pub async fn start(
        me: MemberId,
        bind: SocketAddr,
        seeds: Vec<String>,
        key: Option<ClusterKey>,
        on_down: impl Fn(SocketAddr) + Send + 'static,
    ) -> std::io::Result<Arc<Membership>> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let (input, inputs) = mpsc::unbounded_channel();
        let view = Arc::new(Mutex::new(View::default()));
        tokio::spawn(receive(socket.clone(), input.clone(), key.clone()));
        let state = Gossip {
            socket,
            key,
            input: input.clone(),
            view: view.clone(),
            on_down: Box::new(on_down),
        };
        tokio::spawn(gossip(me.clone(), state, inputs));
        if !seeds.is_empty() {
            tokio::spawn(announce_to_seeds(seeds, me.addr, input.clone()));
        }
        Ok(Arc::new(Membership { me, input, view }))
    }

    /// Who this peer is in the gossip.
    pub fn me(&self) -> &MemberId {
        &self.me
    }

    /// Tries to join (or stay joined) through whoever listens at `addr`.
    pub fn announce(&self, addr: SocketAddr) {
        if addr != self.me.addr {
            let _ = self.input.send(Input::Announce(addr));
        }
    }

    /// The members held alive, this peer not included.
    pub fn alive(&self) -> Vec<PeerInfo> {
        let view = self.view.lock().expect("view lock");
        view.alive.values().map(MemberId::info).collect()
    }

    /// Whether the failure detector holds the member at `addr` down.
    pub fn is_down(&self, addr: SocketAddr) -> bool {
        self.view.lock().expect("view lock").down.contains(&addr)
    }

    /// Tells the cluster this peer leaves, waiting at most `limit` for that to be sent.
    pub async fn leave(&self, limit: Duration) {
        let (said, done) = oneshot::channel();
        if self.input.send(Input::Leave(said)).is_ok() {
            let _ = tokio::time::timeout(limit, done).await;
        }
    }
}

/// Hands every datagram that arrives to the gossip task; with `key`, only those sealed with
/// the same secret, opened.
async fn receive(
    socket: Arc<UdpSocket>,
    input: mpsc::UnboundedSender<Input>,
    key: Option<ClusterKey>,
) {
    let mut buf = vec![0u8; MAX_PACKET * 2];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((len, from)) => {
                let data = match &key {
                    None => Bytes::copy_from_slice(&buf[..len]),
                    Some(key) => match key.open_datagram(&buf[..len]) {
                        Some(opened) => Bytes::from(opened),
                        None => {
                            tracing::debug!(
                                "gossip: dropping a datagram from {from} not sealed with the cluster secret"
                            );
                            continue;
                        }
                    },
                };
                if input.send(Input::Data(data)).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("gossip: cannot receive: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Resolves every seed (a name may stand for several addresses) and announces to each, now and
/// every [`SEED_EVERY`].
async fn announce_to_seeds(
    seeds: Vec<String>,
    me: SocketAddr,
    input: mpsc::UnboundedSender<Input>,
) {
    loop {
        for seed in &seeds {
            match tokio::net::lookup_host(seed.as_str()).await {
                Ok(addresses) => {
                    for addr in addresses.filter(|addr| *addr != me) {
                        if input.send(Input::Announce(addr)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("seed {seed}: cannot resolve it: {e}"),
            }
        }
        tokio::time::sleep(SEED_EVERY).await;
    }
}

/// The failure detector's settings: memberlist's LAN settings for [`EXPECTED_MEMBERS`], with
/// down members re-announced to every few seconds, so that the two sides of a healed partition
/// find each other again soon, and each update passed on twice as often as memberlist does.
///
/// With memberlist's 7 transmissions per update, a run of the cross-host scale test (48 peers)
/// left one peer that heard neither a killed peer's suspicion nor its death; such a peer lists
/// the dead one until it probes it itself, which round-robin over 47 members can take 47 s.
/// Twice the transmissions make such a miss far rarer (each peer hears an update from about
/// twice as many others), and cost bytes only while updates are news: idle traffic is the same.
fn config() -> Config {
    let mut config = Config::new_lan(NonZeroU32::new(EXPECTED_MEMBERS).expect("not zero"));
    config.max_packet_size = MAX_PACKET.try_into().expect("not zero");
    config.max_transmissions = config
        .max_transmissions
        .saturating_mul(std::num::NonZeroU8::new(2).expect("not zero"));
    if let Some(down) = &mut config.periodic_announce_to_down_members {
        down.frequency = Duration::from_secs(5);
    }
    config
}

/// What the gossip task works with besides the SWIM state.
struct Gossip {
    socket: Arc<UdpSocket>,
    /// The cluster secret's keys: every datagram is sealed with them.
    key: Option<ClusterKey>,
    /// Where timers it schedules come back.
    input: mpsc::UnboundedSender<Input>,
    view: Arc<Mutex<View>>,
    on_down: Box<dyn Fn(SocketAddr) + Send>,
}

/// Runs the SWIM state machine: feeds it inputs, sends what it says to send, schedules its
/// timers, and keeps the view up to date.
async fn gossip(me: MemberId, state: Gossip, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let mut foca = Foca::new(me, config(), StdRng::from_os_rng(), WireCodec);
    let mut runtime = AccumulatingRuntime::new();
    let mut leaving = None;
    while let Some(next) = inputs.recv().await {
        let result = match next {
            Input::Data(data) => foca.handle_data(&data, &mut runtime),
            Input::Timer(timer) => foca.handle_timer(timer, &mut runtime),
            Input::Announce(addr) => foca.announce(MemberId::candidate(addr), &mut runtime),
            Input::Leave(said) => {
                leaving = Some(said);
                foca.leave_cluster(&mut runtime)
            }
        };
        if let Err(e) = result {
            tracing::debug!("gossip: {e}");
        }
        while let Some((to, data)) = runtime.to_send() {
            let sealed = match &state.key {
                Some(key) => Bytes::from(key.seal_datagram(&data)),
                None => data,
            };
            if let Err(e) = state.socket.send_to(&sealed, to.addr).await {
                tracing::debug!("gossip: cannot send to {}: {e}", to.addr);
            }
        }
        while let Some((after, timer)) = runtime.to_schedule() {
            let input = state.input.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = input.send(Input::Timer(timer));
            });
        }
        while let Some(notification) = runtime.to_notify() {
            if let Some(down) = notice(&state.view, notification) {
                (state.on_down)(down);
            }
        }
        if let Some(said) = leaving.take() {
            let _ = said.send(());
            return;
        }
    }
}

/// Keeps the view up to date with what the failure detector noticed; returns the address of
/// a member it declared down.
fn notice(view: &Mutex<View>, notification: OwnedNotification<MemberId>) -> Option<SocketAddr> {
    let mut view = view.lock().expect("view lock");
    match notification {
        OwnedNotification::MemberUp(member) => {
            tracing::debug!("gossip: {} is up", member.info().address());
            view.down.remove(&member.addr);
            view.alive.insert(member.addr, member);
        }
        // A later run of the same peer may be up already: only this run goes down.
        OwnedNotification::MemberDown(member) if view.alive.get(&member.addr) == Some(&member) => {
            tracing::info!(
                "{} left the cluster or stopped answering",
                member.info().address()
            );
            view.alive.remove(&member.addr);
            view.down.insert(member.addr);
            return Some(member.addr);
        }
        OwnedNotification::Rename(old, new) => {
            view.alive.remove(&old.addr);
            view.alive.insert(new.addr, new);
        }
        _ => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(port: u16, run: u64) -> MemberId {
        MemberId {
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
            group: "g".into(),
            hub: true,
            run,
        }
    }

    #[test]
    fn a_later_run_wins_and_a_renewed_identity_wins_too() {
        use foca::Identity;
        let (old, new) = (member(3010, 1), member(3010, 2));
        assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
        let renewed = old.renew().expect("renewable");
        assert!(renewed.win_addr_conflict(&old));
        assert_eq!(renewed.addr(), old.addr());
    }

    #[test]
    fn members_are_listed_with_their_peer_id() {
        let info = member(3011, 1).info();
        assert_eq!(info.id, netrun_abi::peer_id::encode("10.0.0.1", 3011, "g"));
        assert!(info.hub);
    }

    #[test]
    fn the_codec_round_trips_and_refuses_to_overflow_the_datagram() {
        let mut codec = WireCodec;
        let original = Member::alive(member(3012, 7));
        let mut buf = Vec::new();
        codec.encode_member(&original, &mut buf).unwrap();
        let mut read = &buf[..];
        assert_eq!(codec.decode_member(&mut read).unwrap(), original);
        assert!(read.is_empty());
        let mut tiny = [0u8; 4];
        assert!(codec.encode_member(&original, &mut tiny[..]).is_err());
    }

    #[test]
    fn down_then_up_again() {
        let view = Mutex::new(View::default());
        notice(&view, OwnedNotification::MemberUp(member(3013, 1)));
        notice(&view, OwnedNotification::MemberDown(member(3013, 1)));
        assert!(view.lock().unwrap().alive.is_empty());
        assert!(view.lock().unwrap().down.contains(&member(3013, 1).addr));
        notice(&view, OwnedNotification::MemberUp(member(3013, 2)));
        assert_eq!(view.lock().unwrap().alive.len(), 1);
        assert!(view.lock().unwrap().down.is_empty());
    }
}
