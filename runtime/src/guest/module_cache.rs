//! The compiled-module cache: a module is compiled once per machine, not once per start.
//!
//! Owns the cache directory and its entries: one file per module and engine, named by the
//! SHA-256 of the module's bytes, the engine's compatibility hash (target, settings, wasmtime
//! version) and this runtime's version, so a changed module, engine setting or runtime never
//! loads a stale entry. Entries are written atomically (a temporary file, then a rename). A
//! missing, unreadable or incompatible entry means compiling again; the cache never makes a
//! start fail.
//!
//! Trust: loading an entry runs native code wasmtime produced earlier. The directory belongs to
//! the user running `netrun` (default `$XDG_CACHE_HOME/netrun` or `~/.cache/netrun`); whoever
//! can write there can already run code as that user.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Where compiled modules are kept.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

/// How a module was obtained, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

impl ModuleCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> ModuleCache {
        ModuleCache { dir }
    }

    /// The default directory: `$XDG_CACHE_HOME/netrun`, else `$HOME/.cache/netrun`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })?;
        Some(base.join("netrun"))
    }

    /// The entry for `bytes` on `engine`.
    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut key = Sha256::new();
        key.update(bytes);
        key.update(engine_hash.finish().to_le_bytes());
        key.update(crate::wire::message::RUNTIME_VERSION.as_bytes());
        let key: String = key.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The compiled module from the cache, or `compile`d and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl FnOnce() -> wasmtime::Result<Module>,
    ) -> wasmtime::Result<(Module, Origin)> {
        let entry = self.entry(engine, bytes);
        if entry.exists() {
            // SAFETY: the entry was written by `store` below, from `Module::serialize` of an
            // engine with the same compatibility hash (it is in the name); see the module docs
            // for who can write the directory.
            match unsafe { Module::deserialize_file(engine, &entry) } {
                Ok(module) => return Ok((module, Origin::Cached)),
                Err(e) => tracing::warn!(
                    "ignoring the cached module {}: {e:#}; compiling again",
                    entry.display()
                ),
            }
        }
        let module = compile()?;
        if let Err(e) = store(&entry, &module) {
            tracing::warn!(
                "cannot cache the compiled module in {}: {e}",
                entry.display()
            );
        }
        Ok((module, Origin::Compiled))
    }
}

/// Writes `module` to `entry` atomically.
fn store(entry: &Path, module: &Module) -> std::io::Result<()> {
    let bytes = module.serialize().map_err(std::io::Error::other)?;
    let dir = entry
        .parent()
        .expect("an entry is inside the cache directory");
    std::fs::create_dir_all(dir)?;
    let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, entry).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Compiles `bytes`, through `cache` when there is one, and logs which happened and how long
/// it took.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    path: &Path,
    cache: Option<&ModuleCache>,
) -> wasmtime::Result<Module> {
    let started = Instant::now();
    let compile = || Module::new(engine, bytes);
    let (module, origin) = match cache {
        Some(cache) => cache.load_or_compile(engine, bytes, compile)?,
        None => (compile()?, Origin::Compiled),
    };
    let ms = started.elapsed().as_millis();
    match origin {
        Origin::Compiled => tracing::info!("compiled {} in {ms} ms", path.display()),
        Origin::Cached => tracing::info!("loaded {} from cache in {ms} ms", path.display()),
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "f") (result i32) i32.const 7))"#;

    /// A directory of this test's own, removed when dropped, also when the test fails.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("netrun-cache-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_second_load_comes_from_the_cache_and_another_module_does_not() {
        let dir = Scratch::new("hit");
        let cache = ModuleCache::new(dir.0.clone());
        let engine = Engine::default();
        let bytes = WAT.as_bytes().to_vec();
        let compile = || Module::new(&engine, &bytes);
        let (_, first) = cache.load_or_compile(&engine, &bytes, compile).unwrap();
        let (_, second) = cache.load_or_compile(&engine, &bytes, compile).unwrap();
        assert_eq!((first, second), (Origin::Compiled, Origin::Cached));
        let other = WAT.replace("7", "8").into_bytes();
        let (_, third) = cache
            .load_or_compile(&engine, &other, || Module::new(&engine, &other))
            .unwrap();
        assert_eq!(third, Origin::Compiled);
    }

    #[test]
    fn a_corrupt_entry_is_compiled_again() {
        let dir = Scratch::new("corrupt");
        let cache = ModuleCache::new(dir.0.clone());
        let engine = Engine::default();
        let bytes = WAT.as_bytes().to_vec();
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(cache.entry(&engine, &bytes), b"not a module").unwrap();
        let (module, origin) = cache
            .load_or_compile(&engine, &bytes, || Module::new(&engine, &bytes))
            .unwrap();
        assert_eq!(origin, Origin::Compiled);
        assert!(module.get_export("f").is_some());
    }
}
