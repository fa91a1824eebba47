//! The wasmtime side of a peer: the engine, the linker with exactly the imports a guest may use,
//! compiling a module and checking its exports' types against the ABI.
//!
//! Owns what is built once per process and shared by every instance: [`Engine`] and the
//! [`InstancePre`] (module compiled and linked). It must not run guest code: instances and
//! calls are [`crate::guest::instance`]'s job.
//!
//! Each call runs under [`Limits`]: a deadline (epoch interruption; [`tick_epochs`] advances
//! the epoch), a memory cap (the [`ResourceLimiter`] of [`HostState`]) and optional fuel.
//!
//! The sandbox is WASI preview 1 with stdout and stderr passed to the peer's own (a line at a
//! time, see [`crate::guest::output`]), and nothing else unless granted: no directories but
//! `--dir` ones, no environment variables but `--env` ones, no sockets, and no stdin except for
//! a peer started with `--entry`, whose entry may read the process's stdin.

use std::sync::Arc;
use std::time::Duration;

use netrun_abi::manifest::ItemKind;
use netrun_abi::names;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, ValType,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::guest::module::{AppModule, LoadError};
use crate::guest::module_cache::ModuleCache;
use crate::guest::output::{GuestOutput, PromptingStdin, Sink};
use crate::guest::reentry::CallState;
use crate::peer::PeerContext;

/// How often the engine's epoch advances: the resolution of call deadlines, and how long guest
/// code runs before other tasks of its thread get a turn.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What one call into a guest may use (`--deadline`, `--max-memory`, `--fuel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time of one call, enforced by epoch interruption.
    pub deadline: Duration,
    /// Linear memory of one instance, in bytes.
    pub max_memory: usize,
    /// Fuel of one call (roughly, wasm instructions); `None`: unmetered.
    pub fuel: Option<u64>,
}

impl Limits {
    /// "deadline of 30 s exceeded".
    pub fn deadline_exceeded(&self) -> String {
        format!("deadline of {} exceeded", seconds(self.deadline))
    }

    /// "memory limit of 256 MiB exceeded".
    pub fn memory_exceeded(&self) -> String {
        format!(
            "memory limit of {} MiB exceeded",
            self.max_memory / (1024 * 1024)
        )
    }

    /// "fuel limit of 1000 exhausted".
    pub fn fuel_exhausted(&self) -> String {
        format!("fuel limit of {} exhausted", self.fuel.unwrap_or(0))
    }
}

/// `30 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs} s")
    }
}

/// What the guest may see beyond stdout and stderr: directories (`--dir`) and environment
/// variables (`--env`). Nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub dirs: Vec<DirGrant>,
    pub env: Vec<(String, String)>,
}

/// A host directory the guest sees at `guest`, read-only unless `writable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub writable: bool,
}

impl DirGrant {
    /// `HOST[:GUEST][:rw]`: the guest path defaults to the host path; `:rw` allows writing.
    pub fn parse(text: &str) -> Result<DirGrant, String> {
        let (rest, writable) = match text.strip_suffix(":rw") {
            Some(rest) => (rest, true),
            None => (text.strip_suffix(":ro").unwrap_or(text), false),
        };
        let (host, guest) = match rest.split_once(':') {
            Some((host, guest)) => (host, guest),
            None => (rest, rest),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!("{text:?}: expected HOST[:GUEST][:rw]"));
        }
        let host = std::path::PathBuf::from(host);
        if !host.is_dir() {
            return Err(format!("{}: not a directory", host.display()));
        }
        Ok(DirGrant {
            host,
            guest: guest.to_string(),
            writable,
        })
    }
}

/// What each instance's store holds.
pub struct HostState {
    pub wasi: WasiP1Ctx,
    /// The peer's services, for the `net` imports.
    pub peer: Arc<PeerContext>,
    /// Set by the `net.panic` import just before a guest panic traps.
    pub panic_message: Option<String>,
    /// Set when the instance was refused memory beyond [`Limits::max_memory`].
    pub memory_refused: bool,
    /// When the running call's deadline passes; `None` for an entry, which has none.
    pub deadline: Option<std::time::Instant>,
    /// The call running now, and the calls of its chain that arrive while it waits.
    pub calls: CallState,
    /// The guest's stdout and stderr, line by line.
    pub output: [GuestOutput; 2],
}

/// Refuses memory growth past the peer's cap. The guest sees `memory.grow` fail (its allocator
/// usually aborts, which traps); the refusal is remembered so the trap can be named.
impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.peer.limits.max_memory {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

impl HostState {
    /// Fresh state for a new instance: a WASI context with stdout/stderr, the process's stdin
    /// when the peer was started to run an entry (`--entry`), and the peer's [`Grants`].
    pub fn new(peer: Arc<PeerContext>) -> anyhow::Result<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        let output = [
            GuestOutput::new(Sink::Stdout),
            GuestOutput::new(Sink::Stderr),
        ];
        wasi.stdout(output[0].clone()).stderr(output[1].clone());
        if peer.guest_stdin {
            wasi.stdin(PromptingStdin::new(output.clone()));
        }
        for (name, value) in &peer.grants.env {
            wasi.env(name, value);
        }
        for dir in &peer.grants.dirs {
            let perms = if dir.writable {
                wasmtime_wasi::FsPerms::ReadWrite
            } else {
                wasmtime_wasi::FsPerms::ReadOnly
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", dir.host.display()))?;
        }
        let wasi = wasi.build_p1();
        Ok(HostState {
            wasi,
            peer,
            panic_message: None,
            memory_refused: false,
            deadline: None,
            calls: CallState::new(),
            output,
        })
    }
}

/// The engine every instance of this process runs on: with epoch interruption (deadlines;
/// someone must advance the epoch, see [`tick_epochs`]), metering when `limits` set fuel, and
/// a pooling allocator with a slot for each of the `workers` instances and for its
/// replacement (a trapped instance is replaced from a warm slot instead of fresh mappings).
pub fn engine(limits: &Limits, workers: usize) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .consume_fuel(limits.fuel.is_some());
    let slots = u32::try_from(2 * workers + 2).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .max_memory_size(limits.max_memory);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`], for the life of the process, on a thread
/// of its own (so a busy async runtime cannot delay deadlines).
pub fn tick_epochs(engine: &Engine) {
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("netrun-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("cannot start the epoch thread");
}

/// A linker with WASI preview 1 and the `net` host imports.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut HostState| &mut state.wasi)
        .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
    crate::guest::host_api::add_to_linker(&mut linker)
        .map_err(|e| anyhow::anyhow!("cannot link the net imports: {e}"))?;
    Ok(linker)
}

/// Compiles `app` (or loads it from `cache`), checks its exports' types and links it. Logs
/// which happened and how long it took.
pub fn prepare(
    engine: &Engine,
    app: &AppModule,
    cache: Option<&ModuleCache>,
) -> Result<InstancePre<HostState>, LoadError> {
    let compile_error = |e: wasmtime::Error| LoadError::Compile {
        path: app.path.clone(),
        reason: format!("{e:#}"),
    };
    let module = crate::guest::module_cache::compile(engine, &app.bytes, &app.path, cache)
        .map_err(compile_error)?;
    check_export_types(app, &module)?;
    let linker = linker(engine).map_err(|e| LoadError::Compile {
        path: app.path.clone(),
        reason: e.to_string(),
    })?;
    linker
        .instantiate_pre(&module)
        .map_err(|e| LoadError::Compile {
            path: app.path.clone(),
            reason: format!("{e:#} (netrun provides only WASI preview 1 and the `net` imports)"),
        })
}

/// Each ABI export must have exactly the ABI's signature.
fn check_export_types(app: &AppModule, module: &Module) -> Result<(), LoadError> {
    use ValType::{I32, I64};
    let mut expected: Vec<(String, Vec<ValType>, Vec<ValType>)> = vec![
        (names::EXPORT_ALLOC.into(), vec![I32], vec![I32]),
        (names::EXPORT_FREE.into(), vec![I32, I32], vec![]),
    ];
    for (kind, _, export) in app.manifest.required_exports() {
        let params = match kind {
            ItemKind::Entry => vec![],
            ItemKind::Connect | ItemKind::Subscribe | ItemKind::Flag | ItemKind::Event => {
                vec![I32, I32]
            }
        };
        expected.push((export, params, vec![I64]));
    }
    for (export, params, results) in expected {
        let bad = |reason: String| LoadError::BadExport {
            path: app.path.clone(),
            export: export.clone(),
            reason,
        };
        let Some(ExternType::Func(ty)) = module.get_export(&export) else {
            return Err(bad("it is not a function".into()));
        };
        let same = |found: &mut dyn ExactSizeIterator<Item = ValType>, want: &[ValType]| {
            found.len() == want.len() && found.zip(want).all(|(a, b)| ValType::eq(&a, b))
        };
        if !same(&mut ty.params(), &params) || !same(&mut ty.results(), &results) {
            return Err(bad(format!(
                "expected a function ({}) -> ({}), found {ty}",
                list(&params),
                list(&results)
            )));
        }
    }
    Ok(())
}

fn list(types: &[ValType]) -> String {
    types
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use netrun_abi::names::import;

    fn links(wat: &str) -> Result<(), String> {
        let limits = Limits {
            deadline: Duration::from_secs(1),
            max_memory: 1 << 20,
            fuel: None,
        };
        let engine = engine(&limits, 1).unwrap();
        let module = Module::new(&engine, wat).unwrap();
        linker(&engine)
            .unwrap()
            .instantiate_pre(&module)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    /// The ABI as a contract: every host import, with its exact signature, links.
    #[test]
    fn every_import_links_with_its_abi_signature() {
        let imports = [
            (import::CALL, "(param i32 i32) (result i64)"),
            (import::PEERS, "(param i32 i32) (result i64)"),
            (import::THIS_PEER, "(result i64)"),
            (import::LOG, "(param i32 i32 i32)"),
            (import::PANIC, "(param i32 i32)"),
            (import::TRIGGER, "(param i32 i32)"),
        ];
        let all: String = imports
            .iter()
            .map(|(name, signature)| format!(r#"(import "net" "{name}" (func {signature}))"#))
            .collect();
        let wasi = r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;
        links(&format!("(module {all} {wasi})")).unwrap();
    }

    #[test]
    fn dir_grants_parse_host_guest_and_mode() {
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let plain = DirGrant::parse(host).unwrap();
        assert_eq!((plain.guest.as_str(), plain.writable), (host, false));
        let mapped = DirGrant::parse(&format!("{host}:/data:rw")).unwrap();
        assert_eq!((mapped.guest.as_str(), mapped.writable), ("/data", true));
        assert!(!DirGrant::parse(&format!("{host}:/data")).unwrap().writable);
        assert!(DirGrant::parse("/no/such/dir:/data").is_err());
        assert!(DirGrant::parse(":/data").is_err());
    }

    #[test]
    fn limits_name_themselves() {
        let limits = Limits {
            deadline: Duration::from_millis(1500),
            max_memory: 256 * 1024 * 1024,
            fuel: Some(1000),
        };
        assert_eq!(limits.deadline_exceeded(), "deadline of 1.5 s exceeded");
        assert_eq!(limits.memory_exceeded(), "memory limit of 256 MiB exceeded");
        assert_eq!(limits.fuel_exhausted(), "fuel limit of 1000 exhausted");
        let whole = Limits {
            deadline: Duration::from_secs(30),
            ..limits
        };
        assert_eq!(whole.deadline_exceeded(), "deadline of 30 s exceeded");
    }

    #[test]
    fn a_wrong_signature_or_an_unknown_import_does_not_link() {
        for wat in [
            r#"(module (import "net" "call" (func (param i32) (result i64))))"#,
            r#"(module (import "net" "open_socket" (func)))"#,
            r#"(module (import "wasi_snapshot_preview1" "sock_open" (func)))"#,
        ] {
            assert!(links(wat).is_err(), "{wat} linked");
        }
    }
}
