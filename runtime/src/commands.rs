//! What each `netrun` command does, as library functions returning a [`Failure`] that says
//! which exit code it deserves. `main` only parses and maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use netrun_abi::manifest::{Record, Subscription};
use netrun_abi::names::flag;
use netrun_abi::{Outcome, PeerQuery};
use serde_json::{Value, json};

use crate::bench::{self, Load};
use crate::cli::{
    BenchArgs, CallArgs, Callee, InfoArgs, InspectArgs, NetOptions, PeersArgs, RunArgs, SeedOptions,
};
use crate::cluster::discovery::{self, Discovery};
use crate::cluster::group_call::{self, Rotation};
use crate::guest::config::Grants;
use crate::guest::module;
use crate::guest::module_cache::ModuleCache;
use crate::peer::{self, PeerConfig};
use crate::wire::client::{Client, Request, Target};
use crate::wire::frame::DEFAULT_MAX_FRAME;
use crate::wire::message::Hello;
use crate::wire::secure::ClusterKey;

/// A command's failure and the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or bad input: exit code 2.
    BadInput(anyhow::Error),
    /// The call, entry or peer failed: exit code 1.
    Failed(anyhow::Error),
    /// Whoever read the command's output has gone (`netrun inspect app.wasm | head -3`): the
    /// command ends there, quietly, with exit code 0, as the reader asked for no more.
    OutputClosed,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 2,
            Failure::Failed(_) => 1,
            Failure::OutputClosed => 0,
        }
    }

    /// What to tell the user on stderr; `None` when there is nothing to say.
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::BadInput(e) | Failure::Failed(e) => Some(error_message(e)),
            Failure::OutputClosed => None,
        }
    }
}

/// `error` and its causes, `: ` between them, each cause left out when what comes before it
/// already says it: most of our error types print their source in their own message, and
/// anyhow's `{:#}` would then say it twice ("cannot read app.wasm: No such file or directory:
/// No such file or directory").
fn error_message(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure::BadInput(e.into())
}

fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Failed(e.into())
}

/// Prints a command's output, `text` and a newline, on stdout. A reader that has gone is
/// [`Failure::OutputClosed`], not a panic; any other failure to write (a full disk) is named.
fn print(text: impl std::fmt::Display) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::OutputClosed,
            _ => failed(anyhow!("cannot write to standard output: {e}")),
        })
}

/// Tells the user `text` and a newline on stderr, beside the command's output (progress, which
/// member served a call, an error). A stderr nobody reads (`2>&1 | head -1`) or cannot take
/// does not fail the command, nor panic as `eprintln!` would: the note is dropped.
pub fn note(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `netrun run`: serve as a peer; with `--entry`, run it and return when it ends.
pub async fn run(args: RunArgs) -> Result<(), Failure> {
    let app = module::load(&args.app).map_err(bad_input)?;
    if let Some(entry) = &args.entry
        && !app.manifest.entries.contains_key(entry)
    {
        let known: Vec<&str> = app.manifest.entries.keys().map(String::as_str).collect();
        return Err(bad_input(anyhow!(
            "{} has no entry {entry:?}; its entries: {}",
            args.app.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let key = args.secret.key().map_err(|e| bad_input(anyhow!(e)))?;
    let config = PeerConfig {
        key: key.clone(),
        insecure: args.insecure,
        connection_limits: args.connections.limits(),
        require_same_module: args.connections.require_same_module,
        appnet: args.appnet || (key.is_none() && !args.no_appnet),
        host: args.net.host,
        advertise: args.advertise,
        seeds: args.seeds.seeds.clone(),
        port: args.net.port,
        port_range: args.net.port_range,
        group: args.group,
        hub: args.hub,
        call_timeout: args.call.timeout,
        max_frame: args.call.max_frame,
        thread_limit: usize::from(args.thread_limit),
        guest_stdin: args.entry.is_some(),
        limits: args.limits.limits(),
        workers: usize::from(args.workers),
        module_cache: if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(ModuleCache::default_dir)
                .map(ModuleCache::new)
        },
        grants: Grants {
            dirs: args.dirs.clone(),
            env: args.env.clone(),
        },
    };
    let mut signals = ShutdownSignals::install()
        .map_err(|e| failed(anyhow!("cannot install signal handlers: {e}")))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server_stops = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let started = peer::start(&config, &app, server_stops)
        .await
        .map_err(|e| match e.downcast::<module::LoadError>() {
            Ok(load) => bad_input(load),
            Err(other) => failed(other),
        })?;
    let address = &started.identity.address;
    // A peer serves whether or not anyone reads what it prints.
    let _ = print(format_args!(
        "peer {} listening on {}:{}",
        started.identity.id, address.host, address.port
    ));
    let result = match &args.entry {
        Some(entry) => tokio::select! {
            result = peer::run_entry(&started.scheduler, entry) => result.map_err(|e| failed(anyhow!(e))),
            () = signals.recv() => Ok(()),
        },
        None => {
            signals.recv().await;
            Ok(())
        }
    };
    tracing::info!("peer {} stopping", started.identity.id);
    // Deliveries still queued and subscriptions on other peers are settled while the server
    // still answers, within the call timeout; a second Ctrl-C or SIGTERM cuts that short.
    tokio::select! {
        () = started.stop(config.call_timeout) => {}
        () = signals.recv() => tracing::warn!("stopping now, with event deliveries not done"),
    }
    let _ = stop.send(true);
    result
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment this is made: install it before the
/// peer says it is listening, so a signal sent right after that line stops it cleanly.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// `netrun call`: one call with JSON arguments, to a peer or any member of a group; prints
/// the JSON result (and, for a group, `served by ID` on stderr).
pub async fn call(args: CallArgs) -> Result<(), Failure> {
    let (callee, function, raw_args) = args.parts().map_err(|e| bad_input(anyhow!(e)))?;
    let mut values = Vec::with_capacity(raw_args.len());
    for (i, raw) in raw_args.iter().enumerate() {
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| bad_input(anyhow!("argument {} is not valid JSON ({e}): {raw}", i + 1)))?;
        values.push(value);
    }
    let json = serde_json::to_vec(&values).expect("JSON values serialize");
    let key = args.secret.key().map_err(|e| bad_input(anyhow!(e)))?;
    let client = Arc::new(Client::new(
        Hello::client(args.call.max_frame),
        args.call.max_frame,
        key.clone(),
    ));
    let request = |args: Vec<u8>| Request::json(&function, args);
    let (outcome, peer) = match callee {
        Callee::Peer(peer) => {
            let target = Target::parse(&peer).map_err(bad_input)?;
            let outcome = client.call(&target, request(json), args.call.timeout).await;
            (outcome, target.display)
        }
        Callee::AnyOf(group) => {
            let discovery = cli_discovery(&args.net, &args.seeds, client.clone(), key);
            let make = || request(json.clone());
            let (outcome, served_by) = group_call::call_any(
                &client,
                &discovery,
                &Rotation::default(),
                &group,
                make,
                args.call.timeout,
            )
            .await;
            match served_by {
                Some(member) => {
                    note(format_args!("served by {}", member.id));
                    (outcome, member.address().to_string())
                }
                None => (outcome, format!("any member of group {group}")),
            }
        }
    };
    let result = json_result(outcome, &peer, &function)?;
    print(result)
}

/// `netrun info`: the peer's `info`, pretty-printed.
pub async fn info(args: InfoArgs) -> Result<(), Failure> {
    let target = Target::parse(&args.peer).map_err(bad_input)?;
    let function = netrun_abi::names::builtin::INFO;
    let key = args.secret.key().map_err(|e| bad_input(anyhow!(e)))?;
    let client = Client::new(Hello::client(args.call.max_frame), args.call.max_frame, key);
    let request = Request::json(function, b"[]".to_vec());
    let outcome = client.call(&target, request, args.call.timeout).await;
    let result = json_result(outcome, &target.display, function)?;
    print(serde_json::to_string_pretty(&result).expect("a JSON value prints"))
}

/// `netrun bench`: calls a function on a peer many times and prints the latency percentiles and
/// the rate (as text, or one JSON object with `--json`); a progress line every second on
/// stderr while it runs.
pub async fn bench(args: BenchArgs) -> Result<(), Failure> {
    let target = Target::parse(&args.peer).map_err(bad_input)?;
    let key = args.secret.key().map_err(|e| bad_input(anyhow!(e)))?;
    let client = Arc::new(Client::new(
        Hello::client(args.call.max_frame),
        args.call.max_frame,
        key,
    ));
    let load = Load {
        target,
        function: args.function.clone(),
        calls: args.calls as usize,
        concurrency: args.concurrency as usize,
        size: args.size,
        timeout: args.call.timeout,
    };
    let progress = |done: usize, elapsed: std::time::Duration| {
        let rate = done as f64 / elapsed.as_secs_f64();
        note(format_args!(
            "{done}/{} calls, {rate:.0} calls/s",
            load.calls
        ));
    };
    let measured = bench::run(client, &load, progress).await.map_err(failed)?;
    let (summary, connect_us) = (measured.calls, measured.connect.as_secs_f64() * 1e6);
    if args.json {
        let report = json!({
            "peer": load.target.display,
            "function": load.function,
            "concurrency": load.concurrency,
            "size": load.size,
            "connect_us": connect_us,
            "calls": summary.calls,
            "p50_us": summary.p50_us,
            "p99_us": summary.p99_us,
            "mean_us": summary.mean_us,
            "throughput": summary.throughput,
        });
        print(report)
    } else {
        print(format_args!(
            "{} on {}: {} calls, {} at a time, {}-byte argument\n\
             p50 {:.1} µs  p99 {:.1} µs  mean {:.1} µs  {:.0} calls/s\n\
             connected in {connect_us:.0} µs, before the first call (not in the figures)",
            load.function,
            load.target.display,
            summary.calls,
            load.concurrency,
            load.size,
            summary.p50_us,
            summary.p99_us,
            summary.mean_us,
            summary.throughput
        ))
    }
}

/// What `peer` answered `function` with, as JSON: the value, `NULL` for the NULL flag, and a
/// failure for anything else.
fn json_result(outcome: Outcome, peer: &str, function: &str) -> Result<Value, Failure> {
    match outcome {
        Outcome::Value(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("peer {peer} answered {function} with invalid JSON"))
            .map_err(failed),
        Outcome::ValueWithBlobs(_) => Err(failed(anyhow!(
            "peer {peer} answered {function} in bincode with blobs, not JSON"
        ))),
        Outcome::Flag(name) if name == flag::NULL => {
            Ok(Value::String(flag::NULL_VALUE.to_string()))
        }
        Outcome::Flag(name) => Err(failed(anyhow!(
            "peer {peer} answered {function} with flag {name}, which the CLI does not know"
        ))),
        Outcome::Error(e) => Err(failed(e)),
    }
}

/// Where the CLI looks for peers: the port range on `--host`, what the seeds list, and, with
/// `--host` beyond loopback, the LAN.
fn cli_discovery(
    net: &NetOptions,
    seeds: &SeedOptions,
    client: Arc<Client>,
    key: Option<ClusterKey>,
) -> Discovery {
    let found = Discovery::for_client(
        &net.host.to_string(),
        discovery::port_range(net.port, net.port_range),
        client.clone(),
    )
    .with_seeds(seeds.seeds.clone())
    .with_lan(net.host);
    // Without a secret, app-net peers are found too (app-net has none).
    match key {
        None => found.with_appnet(client),
        key => found.with_key(key),
    }
}

/// `netrun peers`: scan the port range, ask the seeds, and list the peers.
pub async fn peers(args: PeersArgs) -> Result<(), Failure> {
    let host = args.net.host.to_string();
    let ports = discovery::port_range(args.net.port, args.net.port_range);
    let query = PeerQuery {
        on_host: args.on_host,
        groups: args.groups,
        hubs_only: args.hubs_only,
        refresh: true,
    };
    let key = args.secret.key().map_err(|e| bad_input(anyhow!(e)))?;
    let client = Arc::new(Client::new(
        Hello::client(DEFAULT_MAX_FRAME),
        DEFAULT_MAX_FRAME,
        key.clone(),
    ));
    let found = cli_discovery(&args.net, &args.seeds, client, key)
        .peers(&query)
        .await;
    if args.json {
        let mut out = serde_json::Map::new();
        let mut by_id = serde_json::Map::new();
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for peer in &found {
            by_id.insert(
                peer.id.clone(),
                json!({"host": peer.host, "port": peer.port, "group": peer.group, "hub": peer.hub, "appnet": peer.appnet}),
            );
            groups
                .entry(peer.group.clone())
                .or_default()
                .push(json!(peer.id));
        }
        out.insert("peers".into(), Value::Object(by_id));
        for (group, ids) in groups {
            out.insert(group, Value::Array(ids));
        }
        print(Value::Object(out))?;
    } else if found.is_empty() {
        note(format_args!(
            "no peers found on {host} ports {}..{}{}",
            ports.start,
            ports.end,
            if args.seeds.seeds.is_empty() {
                String::new()
            } else {
                format!(" or through seeds {}", args.seeds.seeds.join(", "))
            }
        ));
    } else {
        let width = found.iter().map(|p| p.id.len()).max().unwrap_or(0);
        let mut lines = vec![format!(
            "{:width$}  {:21}  {:12}  {:3}  RUNTIME",
            "PEER ID", "ADDRESS", "GROUP", "HUB"
        )];
        for p in &found {
            let address = format!("{}:{}", p.host, p.port);
            lines.push(format!(
                "{:width$}  {address:21}  {:12}  {:3}  {}",
                p.id,
                p.group,
                if p.hub { "yes" } else { "no" },
                if p.appnet { "app-net" } else { "netrun" }
            ));
        }
        print(lines.join("\n"))?;
    }
    Ok(())
}

/// `netrun inspect`: what a module offers, without running it.
pub fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let app = module::load(&args.app).map_err(bad_input)?;
    let manifest = &app.manifest;
    let sections = [
        ("connected functions", "functions", &manifest.functions),
        ("events", "events", &manifest.events),
        ("subscriptions", "subscriptions", &manifest.subscriptions),
        ("flag handlers", "flags", &manifest.flags),
    ];
    if args.json {
        let mut out = json!({
            "module": args.app.display().to_string(),
            "hash": app.hash,
            "abi_version": netrun_abi::names::ABI_VERSION,
            "entries": manifest.entries.keys().collect::<Vec<_>>(),
            "builtins": netrun_abi::names::builtin::ALL,
        });
        for (_, key, records) in sections {
            out[key] = records.values().map(record_json).collect();
        }
        return print(serde_json::to_string_pretty(&out).expect("a JSON value prints"));
    }
    let mut lines = vec![
        format!("module: {}", args.app.display()),
        format!("hash: {}", app.hash),
        format!("abi: netrun guest ABI {}", netrun_abi::names::ABI_VERSION),
    ];
    for (title, _, records) in sections {
        lines.push(format!("{title}:"));
        if records.is_empty() {
            lines.push("  (none)".into());
        }
        lines.extend(records.values().map(|r| format!("  {}", record_line(r))));
    }
    lines.push("entries:".into());
    if manifest.entries.is_empty() {
        lines.push("  (none)".into());
    }
    lines.extend(manifest.entries.keys().map(|name| format!("  {name}")));
    lines.push(format!(
        "built-in connections: {}",
        netrun_abi::names::builtin::ALL.join(", ")
    ));
    print(lines.join("\n"))
}

/// One manifest item for people: signature, fingerprint, and what else it says.
fn record_line(record: &Record) -> String {
    let mut line = format!(
        "{}  [fingerprint {:016x}]",
        record.display_signature(),
        record.fingerprint
    );
    if record.name != record.rust_name {
        line.push_str(&format!("  (Rust fn {})", record.rust_name));
    }
    if let Some(subscription) = &record.subscription {
        line.push_str(&format!("  on event {:?}", subscription.event));
        let filters = subscription_filters(subscription);
        if !filters.is_empty() {
            line.push_str(&format!(" from {}", filters.join(", ")));
        }
    }
    line
}

/// A subscription's filters as they would be written in the attribute.
fn subscription_filters(subscription: &Subscription) -> Vec<String> {
    let mut filters = Vec::new();
    if !subscription.groups.is_empty() {
        filters.push(format!("groups = {:?}", subscription.groups));
    }
    if subscription.hubs_only {
        filters.push("hubs_only".to_string());
    }
    if subscription.on_host {
        filters.push("on_host".to_string());
    }
    if !subscription.peers.is_empty() {
        filters.push(format!("peers = {:?}", subscription.peers));
    }
    filters
}

/// One manifest item as JSON.
fn record_json(record: &Record) -> Value {
    let mut out = json!({
        "name": record.name,
        "rust_name": record.rust_name,
        "params": record.params.iter().map(|p| json!({"name": p.name, "ty": p.ty})).collect::<Vec<_>>(),
        "ret": record.ret,
        "signature": record.display_signature(),
        "fingerprint": format!("{:016x}", record.fingerprint),
    });
    if let Some(s) = &record.subscription {
        out["subscription"] = json!({
            "event": s.event,
            "groups": s.groups,
            "hubs_only": s.hubs_only,
            "on_host": s.on_host,
            "peers": s.peers,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read app.wasm: {source}")]
    struct Unreadable {
        source: std::io::Error,
    }

    #[test]
    fn an_error_message_says_each_cause_once() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        // The error's own message already holds its source: said once.
        let error = anyhow::Error::new(Unreadable { source: missing() });
        assert_eq!(error_message(&error), "cannot read app.wasm: no such file");
        // Context that does not repeat its source: both said.
        let error = anyhow::Error::new(missing()).context("loading the module");
        assert_eq!(error_message(&error), "loading the module: no such file");
        let error = anyhow::Error::new(Unreadable { source: missing() }).context("serving");
        assert_eq!(
            error_message(&error),
            "serving: cannot read app.wasm: no such file"
        );
    }
}
