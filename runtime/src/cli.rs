//! Command-line interface: the flags and environment variables of every `netrun` command.
//!
//! Owns parsing only (clap); what each command does is in [`crate::commands`] and
//! [`crate::peer`]. Flags win over environment variables, which win over defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::wire::frame::{DEFAULT_MAX_FRAME, MAX_PAYLOAD};

/// Subcommand names; anything else in first position is an app to run.
pub const SUBCOMMANDS: [&str; 7] = ["run", "peers", "call", "info", "inspect", "bench", "help"];

#[derive(Debug, Parser)]
#[command(
    name = "netrun",
    version,
    about = "Peer-to-peer function runtime: every peer runs the same WebAssembly app",
    long_about = "Peer-to-peer function runtime: every peer runs the same WebAssembly app.\n\n\
        `netrun APP.wasm [OPTIONS]` is short for `netrun run APP.wasm [OPTIONS]`.\n\n\
        Exit codes: 0 ok; 1 the call, entry or peer failed (message on stderr); \
        2 bad usage or bad input (unreadable file, invalid wasm, ABI mismatch, bad peer id, bad JSON).",
    after_help = "Set NET_DEV to any value for debug logging. NET_SECRET, or --secret-file, \
                  holds the cluster secret."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve APP as a peer (and run one of its entry points with --entry)
    Run(RunArgs),
    /// List the peers: this host's port range, the LAN (with --host beyond loopback), and the
    /// cluster as seeds and the peers found know it
    Peers(PeersArgs),
    /// Call a function on a peer with JSON arguments and print its JSON result
    Call(CallArgs),
    /// Describe a peer: id, address, group, hub, connections, events, subscribers and
    /// subscriptions, flags, module hash
    Info(InfoArgs),
    /// Show what a module offers (functions, events, subscriptions, flags, entries, types,
    /// hash) without running it
    Inspect(InspectArgs),
    /// Measure calls to a running peer: latency percentiles (p50, p99, mean) and calls per
    /// second, with CONCURRENCY calls in flight on one connection (made before the clock starts)
    Bench(BenchArgs),
}

/// Where peers live: the host and the port range.
#[derive(Debug, Clone, Args)]
pub struct NetOptions {
    /// Address to bind (run) or scan (peers). Loopback unless you ask: beyond loopback a peer
    /// publishes itself on that interface's LAN (mDNS) and `peers` looks there too
    #[arg(long, env = "NET_HOST", default_value = "127.0.0.1", value_name = "IP")]
    pub host: IpAddr,
    /// First port of the peer port range
    #[arg(long, env = "NET_PORT", default_value_t = 3010)]
    pub port: u16,
    /// Number of ports in the range: a peer binds the first free one of PORT..PORT+RANGE
    #[arg(
        long,
        env = "NET_PORT_RANGE",
        default_value_t = 5,
        value_name = "RANGE"
    )]
    pub port_range: u16,
}

/// How much a serving peer takes on, and for how long.
#[derive(Debug, Clone, Args)]
pub struct ConnectionOptions {
    /// Seconds a new connection has to finish its handshake (a silent or dribbling client is
    /// dropped then)
    #[arg(long, env = "NET_HANDSHAKE_TIMEOUT", default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    pub handshake_timeout: Duration,
    /// Seconds a connection with no call in flight may stay silent before it is closed
    #[arg(long, env = "NET_IDLE_TIMEOUT", default_value = "300", value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait
    #[arg(long, env = "NET_MAX_CONNECTIONS", default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Connections served at once from one address; more are closed
    #[arg(long, env = "NET_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: u32,
    /// Calls served at once on one connection; more wait, unread, for a slot
    #[arg(long, env = "NET_MAX_CALLS_PER_CONNECTION", default_value_t = 256, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_calls_per_connection: u32,
    /// Serve only peers running this peer's module (clients such as the CLI, which run none,
    /// are served)
    #[arg(long)]
    pub require_same_module: bool,
}

impl ConnectionOptions {
    pub fn limits(&self) -> crate::wire::server::ConnectionLimits {
        crate::wire::server::ConnectionLimits {
            handshake: self.handshake_timeout,
            idle: self.idle_timeout,
            connections: self.max_connections as usize,
            connections_per_address: self.max_connections_per_address as usize,
            calls_per_connection: self.max_calls_per_connection as usize,
        }
    }
}

/// The cluster secret: with it every connection and every gossip datagram is authenticated and
/// encrypted; a party without it can neither call, nor be served, nor be listed.
#[derive(Debug, Clone, Default, Args)]
pub struct SecretOptions {
    /// Read the cluster secret from PATH (a trailing newline is ignored). Without it, the
    /// secret is NET_SECRET's value, if set; the secret itself is never printed
    #[arg(long = "secret-file", value_name = "PATH")]
    pub secret_file: Option<PathBuf>,
}

/// The environment variable that holds the cluster secret itself (not shown by `--help`).
pub const SECRET_VARIABLE: &str = "NET_SECRET";

impl SecretOptions {
    /// The keys of the secret `--secret-file` or `NET_SECRET` gives (the file wins); `None`
    /// without either. An unreadable or empty secret is an error that names its source, never
    /// its content.
    pub fn key(&self) -> Result<Option<crate::wire::secure::ClusterKey>, String> {
        let (secret, source) = match &self.secret_file {
            Some(path) => {
                let mut bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                    if bytes.last() == Some(&b'\r') {
                        bytes.pop();
                    }
                }
                (bytes, format!("the secret file {}", path.display()))
            }
            None => match std::env::var_os(SECRET_VARIABLE) {
                Some(value) => (
                    value.into_encoded_bytes(),
                    format!("the {SECRET_VARIABLE} variable"),
                ),
                None => return Ok(None),
            },
        };
        if secret.is_empty() {
            return Err(format!(
                "{source} is empty: a cluster secret needs at least one byte"
            ));
        }
        Ok(Some(crate::wire::secure::ClusterKey::from_secret(&secret)))
    }
}

/// The peers to join the cluster through.
#[derive(Debug, Clone, Default, Args)]
pub struct SeedOptions {
    /// A peer of the cluster, HOST:PORT: `run` joins the cluster through it, `peers` and `call
    /// --group` ask it who is in the cluster (repeat for several, or comma-separated in
    /// NET_SEEDS). A DNS name may stand for several peers; a peer resolves it again every 10 s
    #[arg(
        long = "seed",
        env = "NET_SEEDS",
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub seeds: Vec<String>,
}

/// Limits of outgoing calls.
#[derive(Debug, Clone, Args)]
pub struct CallOptions {
    /// Longest wait for a call's reply, connecting included
    #[arg(long, env = "NET_TIMEOUT", default_value = "30", value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Duration,
    /// Largest frame sent or accepted, in bytes (at most 1073741823)
    #[arg(long, env = "NET_MAX_FRAME", default_value_t = DEFAULT_MAX_FRAME, value_name = "BYTES", value_parser = parse_max_frame)]
    pub max_frame: usize,
}

/// What one call into the guest may use; exceeding a limit traps the call, which fails with
/// an error naming the limit, and replaces the instance.
#[derive(Debug, Clone, Args)]
pub struct LimitOptions {
    /// Wall-clock limit of one call into the guest (entries run unlimited)
    #[arg(long, env = "NET_DEADLINE", default_value = "30", value_name = "SECS", value_parser = parse_secs)]
    pub deadline: Duration,
    /// Linear memory limit of the instance, in MiB
    #[arg(
        long,
        env = "NET_MAX_MEMORY",
        default_value_t = 256,
        value_name = "MIB",
        value_parser = clap::value_parser!(u32).range(1..=4096)
    )]
    pub max_memory: u32,
    /// Fuel of one call (about one unit per wasm instruction); unmetered when not set
    #[arg(long, env = "NET_FUEL", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fuel: Option<u64>,
}

impl LimitOptions {
    pub fn limits(&self) -> crate::guest::config::Limits {
        crate::guest::config::Limits {
            deadline: self.deadline,
            max_memory: self.max_memory as usize * 1024 * 1024,
            fuel: self.fuel,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The app: a wasm32-wasip1 module built with the netrun guest SDK
    pub app: PathBuf,
    /// Run this entry point once the peer is up, then exit (0 if it succeeded, 1 if not).
    /// The entry may read this process's stdin; a peer without --entry has none
    #[arg(long, value_name = "NAME")]
    pub entry: Option<String>,
    /// The peer's group
    #[arg(long, env = "NET_GROUP", default_value = netrun_abi::peer_id::DEFAULT_GROUP)]
    pub group: String,
    /// Make this peer a hub (NET_IS_HUB: any value but 0/false/no/off)
    #[arg(long, env = "NET_IS_HUB", value_parser = clap::builder::FalseyValueParser::new())]
    pub hub: bool,
    /// Event deliveries to subscribers in flight at once
    #[arg(
        long,
        env = "NET_THREAD_LIMIT",
        default_value_t = 5,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub thread_limit: u16,
    /// Instances serving calls in parallel, each with its own state; with 1 every call sees
    /// the state the previous one left
    #[arg(
        long,
        env = "NET_WORKERS",
        default_value_t = 1,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub workers: u16,
    #[command(flatten)]
    pub limits: LimitOptions,
    /// Keep compiled modules here [default: $XDG_CACHE_HOME/netrun or ~/.cache/netrun]
    #[arg(long, env = "NET_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the module at every start; read and write no cache
    #[arg(long)]
    pub no_cache: bool,
    /// Let the guest see a host directory (repeat for several): HOST[:GUEST], read-only unless
    /// it ends in :rw
    #[arg(long = "dir", value_name = "HOST[:GUEST][:rw]", value_parser = crate::guest::config::DirGrant::parse)]
    pub dirs: Vec<crate::guest::config::DirGrant>,
    /// Let the guest see an environment variable (repeat for several): NAME=VALUE, or NAME for
    /// netrun's own value
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The address other peers reach this one at, in its id and every listing [default: the
    /// bound address; bound to 0.0.0.0 or ::, that of the interface toward the first seed,
    /// else of the first interface that is not loopback]
    #[arg(long, env = "NET_ADVERTISE", value_name = "IP")]
    pub advertise: Option<IpAddr>,
    #[command(flatten)]
    pub seeds: SeedOptions,
    #[command(flatten)]
    pub secret: SecretOptions,
    /// Do not warn when the peer is bound beyond loopback without a cluster secret
    #[arg(long)]
    pub insecure: bool,
    /// Serve app-net (Python) peers and call them even with a cluster secret: app-net has no
    /// authentication, so anyone who can reach the port can then call every function in
    /// plaintext. Without a secret this is on already
    #[arg(long, conflicts_with = "no_appnet")]
    pub appnet: bool,
    /// Neither serve app-net peers nor look for them, even without a cluster secret
    #[arg(long)]
    pub no_appnet: bool,
    #[command(flatten)]
    pub connections: ConnectionOptions,
    #[command(flatten)]
    pub net: NetOptions,
    #[command(flatten)]
    pub call: CallOptions,
}

#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Only peers on this host
    #[arg(long)]
    pub on_host: bool,
    /// Only peers in this group (repeat for several)
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Only hubs
    #[arg(long)]
    pub hubs_only: bool,
    /// Print JSON: {"peers": {ID: {host, port, group, hub, appnet}}, GROUP: [ID, …]}
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub seeds: SeedOptions,
    #[command(flatten)]
    pub secret: SecretOptions,
    #[command(flatten)]
    pub net: NetOptions,
}

#[derive(Debug, Args)]
#[command(
    override_usage = "netrun call [OPTIONS] PEER FUNCTION [JSON_ARG]...\n       \
                      netrun call [OPTIONS] --group GROUP FUNCTION [JSON_ARG]...",
    after_help = "A timeout names where the time ran out: connecting, queued on the peer (the \
                  function never ran), running (it was stopped), or waiting for the reply. \
                  \"Outcome unknown\" means the connection was lost after the call was sent: \
                  it may or may not have run, and netrun never sends it again."
)]
pub struct CallArgs {
    /// The peer: its id (base64 of "host:port -> group", as `netrun peers` prints it) or
    /// HOST:PORT. With --group, leave it out: the first word is then the function
    #[arg(value_name = "PEER")]
    pub peer: String,
    /// Function to call: a connected function's name or tag, or a built-in
    /// (info, connections, pass_through, null)
    #[arg(value_name = "FUNCTION", allow_negative_numbers = true)]
    pub function: Option<String>,
    /// Arguments, each one JSON value (quote strings: '"text"')
    #[arg(value_name = "JSON_ARG", allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Call one live member of GROUP instead of one peer: members found by scanning the port
    /// range are tried in turn, skipping unreachable ones; prints `served by ID` on stderr
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub call: CallOptions,
    #[command(flatten)]
    pub seeds: SeedOptions,
    #[command(flatten)]
    pub secret: SecretOptions,
    #[command(flatten)]
    pub net: NetOptions,
}

/// Who a `netrun call` goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee {
    /// A peer id or `HOST:PORT`.
    Peer(String),
    /// One live member of a group.
    AnyOf(String),
}

impl CallArgs {
    /// The callee, the function and its JSON arguments, read the way the usage in effect
    /// puts them (with `--group`, there is no PEER).
    pub fn parts(&self) -> Result<(Callee, String, Vec<String>), String> {
        match &self.group {
            Some(group) => {
                let args = self.function.iter().chain(&self.args).cloned().collect();
                Ok((Callee::AnyOf(group.clone()), self.peer.clone(), args))
            }
            None => match &self.function {
                Some(function) => Ok((
                    Callee::Peer(self.peer.clone()),
                    function.clone(),
                    self.args.clone(),
                )),
                None => Err(format!(
                    "missing FUNCTION: `netrun call {} FUNCTION [JSON_ARG]...`, or `netrun call --group GROUP {} [JSON_ARG]...` to call it on any member of a group",
                    self.peer, self.peer
                )),
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The peer: its id or HOST:PORT
    pub peer: String,
    #[command(flatten)]
    pub call: CallOptions,
    #[command(flatten)]
    pub secret: SecretOptions,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The peer: its id or HOST:PORT
    pub peer: String,
    /// Function to call, with one string argument of --size bytes
    #[arg(default_value = "pass_through")]
    pub function: String,
    /// Calls to make in all
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,
    /// Calls in flight at once, on one connection
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Bytes of the string argument
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub call: CallOptions,
    #[command(flatten)]
    pub secret: SecretOptions,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The module to inspect
    pub app: PathBuf,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `NAME=VALUE`, or `NAME` for the value in netrun's environment.
fn parse_env(text: &str) -> Result<(String, String), String> {
    let (name, value) = match text.split_once('=') {
        Some((name, value)) => (name, value.to_string()),
        None => (
            text,
            std::env::var(text).map_err(|_| {
                format!("{text} is not set in netrun's environment: write {text}=VALUE")
            })?,
        ),
    };
    if name.is_empty() {
        return Err(format!("{text:?}: expected NAME[=VALUE]"));
    }
    Ok((name.to_string(), value))
}

/// A positive number of seconds.
fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{text} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_max_frame(text: &str) -> Result<usize, String> {
    let bytes: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    if bytes > MAX_PAYLOAD {
        return Err(format!(
            "{bytes} is over {MAX_PAYLOAD}, the largest frame the wire protocol can carry"
        ));
    }
    Ok(bytes)
}

/// Arguments with `run` inserted when the first one names an app rather than a command.
pub fn with_implicit_run(mut args: Vec<String>) -> Vec<String> {
    if let Some(first) = args.get(1)
        && !first.starts_with('-')
        && !SUBCOMMANDS.contains(&first.as_str())
    {
        args.insert(1, "run".to_string());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = with_implicit_run(args.iter().map(|s| s.to_string()).collect());
        Cli::try_parse_from(args)
    }

    /// `args`, which must parse as `netrun call`.
    fn parse_call(args: &[&str]) -> CallArgs {
        match parse(args).unwrap().command {
            Command::Call(call) => call,
            other => panic!("expected call, got {other:?}"),
        }
    }

    /// The error `args` are refused with: a bad value of `flag`, named in the message, which
    /// also says `why`.
    fn refused_value(args: &[&str], flag: &str, why: &str) {
        let error = match parse(args) {
            Ok(_) => panic!("{args:?} accepted"),
            Err(error) => error,
        };
        let message = error.to_string();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{args:?}: {message}"
        );
        assert!(
            message.contains(flag) && message.contains(why),
            "{args:?}: expected {flag} and {why:?} in: {message}"
        );
    }

    #[test]
    fn an_app_first_means_run() {
        let Command::Run(run) = parse(&["netrun", "app.wasm", "--hub"]).unwrap().command else {
            panic!("expected run");
        };
        assert_eq!(run.app, PathBuf::from("app.wasm"));
        assert!(run.hub);
    }

    #[test]
    fn call_takes_negative_numbers_as_arguments() {
        let call = parse_call(&["netrun", "call", "ID", "add", "-2", "3"]);
        assert_eq!(call.args, ["-2", "3"]);
        assert_eq!(
            call.parts().unwrap(),
            (
                Callee::Peer("ID".into()),
                "add".into(),
                vec!["-2".into(), "3".into()]
            )
        );
        let call = parse_call(&["netrun", "call", "ID", "f", "1", "--timeout", "2"]);
        assert_eq!(
            (call.args.len(), call.call.timeout),
            (1, Duration::from_secs(2))
        );
    }

    #[test]
    fn with_a_group_the_first_word_is_the_function() {
        let call = parse_call(&["netrun", "call", "--group", "g", "add", "-2", "3"]);
        assert_eq!(
            call.parts().unwrap(),
            (
                Callee::AnyOf("g".into()),
                "add".into(),
                vec!["-2".into(), "3".into()]
            )
        );
        let call = parse_call(&["netrun", "call", "ID"]);
        let missing = call.parts().unwrap_err();
        assert!(missing.starts_with("missing FUNCTION"), "{missing}");
    }

    #[test]
    fn the_thread_limit_is_at_least_one() {
        let Command::Run(run) = parse(&["netrun", "app.wasm"]).unwrap().command else {
            panic!("expected run");
        };
        assert_eq!(run.thread_limit, 5);
        refused_value(
            &["netrun", "app.wasm", "--thread-limit", "0"],
            "--thread-limit",
            "0 is not in 1..",
        );
    }

    #[test]
    fn limits_have_server_defaults_and_are_checked() {
        let Command::Run(run) = parse(&["netrun", "app.wasm"]).unwrap().command else {
            panic!("expected run");
        };
        let limits = run.limits.limits();
        assert_eq!(limits.deadline, Duration::from_secs(30));
        assert_eq!(limits.max_memory, 256 * 1024 * 1024);
        assert_eq!(limits.fuel, None);
        for (flag, value, why) in [
            ("--deadline", "0", "must be a positive number of seconds"),
            ("--max-memory", "0", "0 is not in 1..=4096"),
            ("--max-memory", "5000", "5000 is not in 1..=4096"),
            ("--fuel", "0", "0 is not in 1.."),
        ] {
            refused_value(&["netrun", "app.wasm", flag, value], flag, why);
        }
    }

    #[test]
    fn timeouts_must_be_positive() {
        refused_value(
            &["netrun", "call", "ID", "f", "--timeout", "0"],
            "--timeout",
            "0 must be a positive number of seconds",
        );
        refused_value(
            &["netrun", "call", "ID", "f", "--timeout", "soon"],
            "--timeout",
            "\"soon\" is not a number of seconds",
        );
    }

    #[test]
    fn a_frame_limit_must_fit_a_frame_header() {
        refused_value(
            &["netrun", "app.wasm", "--max-frame", "1073741824"],
            "--max-frame",
            "1073741824 is over 1073741823",
        );
        refused_value(
            &["netrun", "app.wasm", "--max-frame", "big"],
            "--max-frame",
            "\"big\" is not a number of bytes",
        );
        let Command::Run(run) = parse(&["netrun", "app.wasm", "--max-frame", "1073741823"])
            .unwrap()
            .command
        else {
            panic!("expected run");
        };
        assert_eq!(run.call.max_frame, 1073741823);
    }
}
