//! The wasmtime side of a peer: the engine, the linker with exactly the imports a guest may use,
//! compiling a module and checking its exports' types against the ABI.
//!
//! Owns what is built once per process and shared by every instance: [`Engine`] and the
//! [`InstancePre`] (module compiled and linked). It must not run guest code: instances and
//! calls are [`crate::guest::instance`]'s job.
//!
//! Each call runs under [`Limits`]: a deadline (epoch interruption; [`tick_epochs`] advances
//! the epoch), a memory cap (the `ResourceLimiter` of [`HostState`]) and optional fuel.
//!
//! The sandbox is WASI preview 1 with stdout and stderr passed to the peer's own (a line at a
//! time, see [`crate::guest::output`]), and nothing else unless granted: no directories but
//! `--dir` ones, no environment variables but `--env` ones, no sockets, and no stdin except for
//! a peer started with `--entry`, whose entry may read the process's stdin.

use std::time::Duration;

use netrun_abi::manifest::ItemKind;
use netrun_abi::names;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ValType,
};

use crate::guest::config::Limits;
use crate::guest::module::{AppModule, LoadError};
use crate::guest::module_cache::ModuleCache;
use crate::guest::state::HostState;

/// How often the engine's epoch advances: the resolution of call deadlines, and how long guest
/// code runs before other tasks of its thread get a turn.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

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

/// A linker with WASI preview 1 (its `clock_time_get` synchronous: [`crate::guest::clocks`])
/// and the `net` host imports.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut HostState| &mut state.wasi)
        .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
    crate::guest::clocks::add_to_linker(&mut linker)
        .map_err(|e| anyhow::anyhow!("cannot link the guest's clocks: {e}"))?;
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
            (import::CALL_START, "(param i32 i32) (result i64)"),
            (import::CALL_WAIT, "(param i64) (result i64)"),
            (import::CALL_FORGET, "(param i64)"),
            (import::PEERS, "(param i32 i32) (result i64)"),
            (import::THIS_PEER, "(result i64)"),
            (import::LOG, "(param i32 i32 i32)"),
            (import::PANIC, "(param i32 i32)"),
            (import::TRIGGER, "(param i32 i32)"),
            (import::EVENT_JSON, "(param i32 i32) (result i32)"),
            (import::BLOB_OUT, "(param i32 i32 i32)"),
            (import::BLOB_IN, "(param i32 i32) (result i64)"),
            (import::INPUT, "(param i32 i32)"),
            (import::OUTPUT, "(param i32 i32)"),
        ];
        let all: String = imports
            .iter()
            .map(|(name, signature)| format!(r#"(import "net" "{name}" (func {signature}))"#))
            .collect();
        let wasi = r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#;
        links(&format!("(module {all} {wasi})")).unwrap();
    }

    #[test]
    fn a_wrong_signature_or_an_unknown_import_does_not_link() {
        for (wat, why) in [
            (
                r#"(module (import "net" "call" (func (param i32) (result i64))))"#,
                "incompatible import type for `net::call`",
            ),
            (
                r#"(module (import "net" "open_socket" (func)))"#,
                "unknown import: `net::open_socket`",
            ),
            (
                r#"(module (import "wasi_snapshot_preview1" "sock_open" (func)))"#,
                "unknown import: `wasi_snapshot_preview1::sock_open`",
            ),
        ] {
            match links(wat) {
                Ok(()) => panic!("{wat} linked"),
                Err(e) => assert!(e.contains(why), "{wat}: expected {why:?} in: {e}"),
            }
        }
    }
}
