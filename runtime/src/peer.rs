//! A running peer: binding its port, and the assembly of its identity, instances, context,
//! router and server into one process.
//!
//! Owns start-up order and the choice of port (the first free one of
//! `NET_PORT..NET_PORT+NET_PORT_RANGE`, with `SO_REUSEADDR` so a restarted peer gets its port
//! and id back even while its old connections linger in TIME_WAIT). Protocol and sandbox details
//! live in their own modules.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netrun_abi::names::{self, ExportKind};
use netrun_abi::peer_id::PeerAddress;
use netrun_abi::{CallError, Outcome};
use tokio::net::{TcpListener, TcpSocket};

use crate::cluster::address;
use crate::cluster::context::{KnownTargets, PeerContext};
use crate::cluster::discovery::{self, Discovery};
use crate::cluster::events::Events;
use crate::cluster::group_call::Rotation;
use crate::cluster::identity::Identity;
use crate::cluster::lan::Lan;
use crate::cluster::membership::{MemberId, Membership};
use crate::cluster::registrations::Registrations;
use crate::cluster::router::Router;
use crate::guest::config::{Grants, GuestConfig, Limits};
use crate::guest::module::AppModule;
use crate::guest::module_cache::ModuleCache;
use crate::guest::sandbox;
use crate::guest::scheduler::{Job, Scheduler};
use crate::guest::state::InstanceEnv;
use crate::guest::workers;
use crate::wire::client::Client;
use crate::wire::secure::ClusterKey;
use crate::wire::server::{Admission, ConnectionLimits};

/// How a peer is set up (from flags and environment; see [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The cluster secret's keys: every connection and gossip datagram is secured with them.
    pub key: Option<ClusterKey>,
    /// Bound beyond loopback without a secret, do not warn (`--insecure`).
    pub insecure: bool,
    /// How much the server takes on, and for how long.
    pub connection_limits: ConnectionLimits,
    /// Serve only peers running the same module (`--require-same-module`).
    pub require_same_module: bool,
    /// Serve app-net's requests and find app-net peers: on without a secret, and with one only
    /// when forced (`--appnet`).
    pub appnet: bool,
    /// The address to bind.
    pub host: IpAddr,
    /// The address to advertise, when it is not the bound one (`--advertise`).
    pub advertise: Option<IpAddr>,
    /// Peers to join the cluster through (`--seed`, `NET_SEEDS`).
    pub seeds: Vec<String>,
    /// First port of the range (`NET_PORT`).
    pub port: u16,
    /// Number of ports in the range (`NET_PORT_RANGE`).
    pub port_range: u16,
    pub group: String,
    pub hub: bool,
    /// Default limit on an outgoing call, connection and reply included.
    pub call_timeout: Duration,
    /// Largest frame sent or accepted.
    pub max_frame: usize,
    /// Event deliveries in flight at once (`NET_THREAD_LIMIT`).
    pub thread_limit: usize,
    /// Give the guest the process's stdin (a peer started with `--entry`).
    pub guest_stdin: bool,
    /// What one call may use.
    pub limits: Limits,
    /// Instances serving calls in parallel (`--workers`).
    pub workers: usize,
    /// Where compiled modules are kept; `None` compiles at every start.
    pub module_cache: Option<ModuleCache>,
    /// Directories and environment variables the guest may see.
    pub grants: Grants,
}

impl PeerConfig {
    /// The ports this peer may bind, and that discovery scans.
    pub fn ports(&self) -> std::ops::Range<u16> {
        discovery::port_range(self.port, self.port_range)
    }
}

/// Why no port could be bound.
#[derive(Debug, thiserror::Error)]
#[error(
    "no free port on {host} in {start}..{end} (NET_PORT={start}, NET_PORT_RANGE={range}): {last}"
)]
pub struct BindError {
    host: IpAddr,
    start: u16,
    end: u16,
    range: u16,
    last: String,
}

/// Binds the first free port of the range.
pub fn bind(config: &PeerConfig) -> Result<(TcpListener, u16), BindError> {
    let mut last = "the range is empty".to_string();
    for port in config.ports() {
        match bind_one(SocketAddr::new(config.host, port)) {
            Ok(listener) => return Ok((listener, port)),
            Err(e) => last = format!("port {port}: {e}"),
        }
    }
    Err(BindError {
        host: config.host,
        start: config.port,
        end: config.ports().end,
        range: config.port_range,
        last,
    })
}

fn bind_one(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// A peer that is up: its identity, its instances, and its event machinery.
pub struct Peer {
    pub identity: Identity,
    pub scheduler: Arc<Scheduler>,
    context: Arc<PeerContext>,
    membership: Arc<Membership>,
    lan: Option<Lan>,
    registrations: Arc<Registrations>,
    registering: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Leaves cleanly: stops registering subscriptions, unregisters them from their
    /// publishers, delivers what this peer's events still have queued, and tells the cluster
    /// it leaves, each within `limit`.
    pub async fn stop(self, limit: Duration) {
        self.registering.abort();
        let unsubscribe = self.registrations.unsubscribe_all(&self.context, limit);
        let leave = self.membership.leave(limit);
        let (_, undelivered, ()) =
            tokio::join!(unsubscribe, self.context.events.drain(limit), leave);
        if undelivered > 0 {
            tracing::warn!("stopping with {undelivered} event deliveries not done");
        }
        if let Some(lan) = self.lan {
            let _ = tokio::task::spawn_blocking(move || lan.stop()).await;
        }
    }
}

/// Publishes this peer (at `address`) on the LAN of its bound interfaces and hands every peer
/// found there to `membership`. Failing is not fatal: the peer goes on without LAN discovery.
fn publish_on_lan(
    config: &PeerConfig,
    address: SocketAddr,
    module_hash: &str,
    membership: &Arc<Membership>,
) -> Option<Lan> {
    let started = Lan::on(config.host).and_then(|mut lan| {
        lan.publish(address, &config.group, config.hub, module_hash)?;
        let membership = membership.clone();
        lan.browse(move |found| membership.announce(found))?;
        Ok(lan)
    });
    match started {
        Ok(lan) => Some(lan),
        Err(e) => {
            tracing::warn!("{e}; going on without LAN discovery");
            None
        }
    }
}

/// Compiles `app`, binds a port, starts the instances and serves calls until `shutdown`
/// resolves. Returns once the peer is listening; serving goes on in the background.
pub async fn start(
    config: &PeerConfig,
    app: &AppModule,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Peer> {
    let engine = sandbox::engine(&config.limits, config.workers)?;
    sandbox::tick_epochs(&engine);
    let pre = sandbox::prepare(&engine, app, config.module_cache.as_ref())?;
    let (listener, port) = bind(config)?;
    let host = address::advertised(config.host, config.advertise, &config.seeds);
    let identity = Identity::new(
        PeerAddress::new(host.to_string(), port, config.group.as_str()),
        config.hub,
        app.hash.clone(),
    )
    .with_appnet(config.appnet);
    if address::beyond_loopback(config.host) && config.key.is_none() && !config.insecure {
        tracing::warn!(
            "bound to {} without a cluster secret: anyone who can reach port {port} can call every function, list the cluster and read the traffic; set NET_SECRET or --secret-file (or --insecure to silence this)",
            config.host
        );
    }
    if config.appnet && config.key.is_some() {
        tracing::warn!(
            "--appnet with a cluster secret: app-net requests are served and sent in plaintext, unauthenticated; anyone who can reach port {port} can call every function"
        );
    }
    let client = Arc::new(
        Client::new(
            identity.hello(config.max_frame),
            config.max_frame,
            config.key.clone(),
        )
        .with_appnet(config.appnet),
    );
    let gives_up = client.clone();
    let membership = Membership::start(
        MemberId::new(SocketAddr::new(host, port), &config.group, config.hub),
        SocketAddr::new(config.host, port),
        config.seeds.clone(),
        config.key.clone(),
        move |down: SocketAddr| {
            gives_up.give_up(
                &down.to_string(),
                "the failure detector declared the peer down",
            )
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot open the gossip socket udp {}:{port}: {e}",
            config.host
        )
    })?;
    let lan = address::beyond_loopback(config.host)
        .then(|| publish_on_lan(config, SocketAddr::new(host, port), &app.hash, &membership))
        .flatten();
    let events = Events::new(
        identity.address.to_string(),
        app.manifest.events.clone(),
        client.clone(),
        config.call_timeout,
        config.thread_limit,
    );
    let (scheduler, queue) = Scheduler::new();
    let mut discovery = Discovery::new(&host.to_string(), config.ports(), Some(port))
        .with_membership(membership.clone())
        .with_key(config.key.clone());
    if config.appnet {
        discovery = discovery.with_appnet(client.clone());
    }
    let context = Arc::new(PeerContext {
        me: identity.info(),
        client,
        discovery: Arc::new(discovery),
        call_timeout: config.call_timeout,
        events: events.clone(),
        rotation: Rotation::default(),
        targets: KnownTargets::default(),
    });
    let env = InstanceEnv {
        config: Arc::new(GuestConfig {
            limits: config.limits,
            grants: config.grants.clone(),
            stdin: config.guest_stdin,
            workers: config.workers,
            flags: app.manifest.flags.clone(),
        }),
        services: context.clone(),
        scheduler: scheduler.clone(),
    };
    workers::start(pre, env, queue).await?;
    let registrations = Registrations::new(app.manifest.subscriptions.values());
    let router = Arc::new(Router::new(
        &identity,
        context.discovery.clone(),
        app.manifest.clone(),
        scheduler.clone(),
        events,
        registrations.clone(),
    ));
    tokio::spawn(crate::wire::server::run(
        listener,
        identity.hello(config.max_frame),
        router,
        Admission {
            limits: config.connection_limits,
            max_frame: config.max_frame,
            key: config.key.clone(),
            same_module: config.require_same_module.then(|| app.hash.clone()),
            appnet: config.appnet,
        },
        shutdown,
    ));
    let registering = tokio::spawn(registrations.clone().run(context.clone()));
    Ok(Peer {
        identity,
        scheduler,
        context,
        membership,
        lan,
        registrations,
        registering,
    })
}

/// Runs the entry point `name` in one of the peer's instances.
pub async fn run_entry(scheduler: &Scheduler, name: &str) -> Result<(), String> {
    let export = names::export(ExportKind::Entry, name).into();
    match scheduler.run(Job::Entry { export }, None, None).await {
        Ok(Outcome::Value(_) | Outcome::ValueWithBlobs(_)) => Ok(()),
        Ok(Outcome::Error(CallError::Remote { message, .. })) => {
            Err(format!("entry {name} failed: {message}"))
        }
        Ok(Outcome::Error(e)) => Err(format!("entry {name} failed: {e}")),
        Ok(Outcome::Flag(f)) => Err(format!("entry {name} answered with flag {f}")),
        Err(failure) => Err(format!("entry {name} failed: {failure}")),
    }
}
