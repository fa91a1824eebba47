//! Reading an app module from disk and checking it against the guest ABI, without running it.
//!
//! Owns: the file's bytes and hash, the manifest (what the module offers), and the checks that
//! need no compilation (wasm magic, a core module rather than a component, a manifest for this
//! ABI version, an export for every manifest item). Every failure is a [`LoadError`] naming the
//! file and what is wrong. Compiling and the export *types* are [`crate::guest::sandbox`]'s job.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use netrun_abi::manifest::{self, ItemKind, ManifestError, Record};
use netrun_abi::names::{self, ExportKind};
use sha2::{Digest, Sha256};

/// Why a module cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a WebAssembly module: {reason}")]
    NotWasm { path: PathBuf, reason: String },
    #[error("{path} is a WebAssembly component; netrun runs core modules built for wasm32-wasip1")]
    Component { path: PathBuf },
    #[error("{path} is not a valid WebAssembly module: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "{path} has no netrun manifest (custom section {section:?}): build it with the netrun guest SDK (`net` crate) and at least one #[net::connect] or #[net::entry]",
        section = names::MANIFEST_SECTION
    )]
    NoManifest { path: PathBuf },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error(
        "{path}: {what} {name:?} is declared in the manifest but the module does not export {export:?}"
    )]
    MissingExport {
        path: PathBuf,
        what: &'static str,
        name: String,
        export: String,
    },
    #[error("{path}: export {export:?} does not fit the netrun ABI: {reason}")]
    BadExport {
        path: PathBuf,
        export: String,
        reason: String,
    },
    #[error("{path}: {name:?} is declared twice in the manifest")]
    Duplicate { path: PathBuf, name: String },
    #[error("{path}: cannot compile: {reason}")]
    Compile { path: PathBuf, reason: String },
}

/// What a module offers, from its manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Connected functions by registered name.
    pub functions: BTreeMap<String, Record>,
    /// Entry points by name.
    pub entries: BTreeMap<String, Record>,
    /// Events by event name.
    pub events: BTreeMap<String, Record>,
    /// Subscription handlers by their name (the Rust name).
    pub subscriptions: BTreeMap<String, Record>,
    /// Flag handlers by flag name.
    pub flags: BTreeMap<String, Record>,
}

impl Manifest {
    fn from_records(path: &Path, records: Vec<Record>) -> Result<Manifest, LoadError> {
        let mut manifest = Manifest::default();
        for record in records {
            let table = match record.kind {
                ItemKind::Connect => &mut manifest.functions,
                ItemKind::Entry => &mut manifest.entries,
                ItemKind::Event => &mut manifest.events,
                ItemKind::Subscribe => &mut manifest.subscriptions,
                ItemKind::Flag => &mut manifest.flags,
            };
            let name = record.name.clone();
            if table.insert(name.clone(), record).is_some() {
                return Err(LoadError::Duplicate {
                    path: path.to_path_buf(),
                    name,
                });
            }
        }
        Ok(manifest)
    }

    /// Every export the manifest implies: the item's kind and name, and the export's name.
    pub fn required_exports(&self) -> Vec<(ItemKind, &str, String)> {
        let mut out = Vec::new();
        for name in self.functions.keys() {
            for export in [ExportKind::Function, ExportKind::Json] {
                out.push((
                    ItemKind::Connect,
                    name.as_str(),
                    names::export(export, name),
                ));
            }
        }
        let single = [
            (ItemKind::Entry, &self.entries, ExportKind::Entry),
            (
                ItemKind::Subscribe,
                &self.subscriptions,
                ExportKind::Subscriber,
            ),
            (
                ItemKind::Subscribe,
                &self.subscriptions,
                ExportKind::SubscriberJson,
            ),
            (ItemKind::Flag, &self.flags, ExportKind::Flag),
        ];
        for (kind, table, export) in single {
            for name in table.keys() {
                out.push((kind, name.as_str(), names::export(export, name)));
            }
        }
        out
    }
}

/// An app module read from disk and checked, ready to compile.
#[derive(Debug, Clone)]
pub struct AppModule {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`, lowercase hex.
    pub hash: String,
    pub manifest: Manifest,
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<AppModule, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, bytes)
}

/// Checks a module's bytes (`path` is for messages).
pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<AppModule, LoadError> {
    let path_buf = path.to_path_buf();
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let reason = if bytes.is_empty() {
            "the file is empty".to_string()
        } else {
            "it does not start with the \\0asm magic bytes".to_string()
        };
        return Err(LoadError::NotWasm {
            path: path_buf,
            reason,
        });
    }
    let mut section = Vec::new();
    let mut exports = HashSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        let payload = payload.map_err(|e| LoadError::Malformed {
            path: path_buf.clone(),
            reason: e.to_string(),
        })?;
        match payload {
            wasmparser::Payload::Version {
                encoding: wasmparser::Encoding::Component,
                ..
            } => {
                return Err(LoadError::Component { path: path_buf });
            }
            wasmparser::Payload::CustomSection(reader)
                if reader.name() == names::MANIFEST_SECTION =>
            {
                section.extend_from_slice(reader.data());
            }
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| LoadError::Malformed {
                        path: path_buf.clone(),
                        reason: e.to_string(),
                    })?;
                    exports.insert(export.name.to_string());
                }
            }
            _ => {}
        }
    }
    if section.is_empty() {
        return Err(LoadError::NoManifest { path: path_buf });
    }
    let records = manifest::decode_section(&section).map_err(|source| LoadError::Manifest {
        path: path_buf.clone(),
        source,
    })?;
    let manifest = Manifest::from_records(path, records)?;
    for (kind, name, export) in manifest.required_exports() {
        if !exports.contains(&export) {
            return Err(LoadError::MissingExport {
                path: path_buf,
                what: kind.describe(),
                name: name.to_string(),
                export,
            });
        }
    }
    for export in [
        names::EXPORT_MEMORY,
        names::EXPORT_ALLOC,
        names::EXPORT_FREE,
    ] {
        if !exports.contains(export) {
            return Err(LoadError::BadExport {
                path: path_buf,
                export: export.to_string(),
                reason: "the module does not export it (is the `net` crate linked?)".to_string(),
            });
        }
    }
    let hash = hex(&Sha256::digest(&bytes));
    Ok(AppModule {
        path: path_buf,
        bytes,
        hash,
        manifest,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netrun_abi::manifest::Param;

    /// A module with the given custom section and exports of one tiny function.
    fn module_with(section: &[u8], exports: &[&str]) -> Vec<u8> {
        let exports: String = exports
            .iter()
            .map(|e| format!("(export {e:?} (func $f))"))
            .collect();
        let wat = format!("(module (memory (export \"memory\") 1) (func $f) {exports})");
        let mut bytes = wat::parse_str(&wat).unwrap();
        let name = names::MANIFEST_SECTION.as_bytes();
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(section);
        bytes.push(0);
        leb(&mut bytes, body.len());
        bytes.extend(body);
        bytes
    }

    fn leb(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn echo_record() -> Vec<u8> {
        Record::new(
            ItemKind::Connect,
            "echo",
            "echo",
            vec![Param {
                name: "m".into(),
                ty: "String".into(),
            }],
            "String",
        )
        .to_section_bytes()
    }

    #[test]
    fn accepts_a_module_that_exports_what_its_manifest_says() {
        let bytes = module_with(
            &echo_record(),
            &[
                "__netrun_fn:echo",
                "__netrun_json:echo",
                "netrun_alloc",
                "netrun_free",
            ],
        );
        let module = parse(Path::new("ok.wasm"), bytes).unwrap();
        assert_eq!(
            module.manifest.functions["echo"].display_signature(),
            "echo(m: String) -> String"
        );
        assert_eq!(module.hash.len(), 64);
    }

    #[test]
    fn names_the_missing_export() {
        let bytes = module_with(
            &echo_record(),
            &["__netrun_fn:echo", "netrun_alloc", "netrun_free"],
        );
        let err = parse(Path::new("app.wasm"), bytes).unwrap_err().to_string();
        assert!(
            err.contains("app.wasm") && err.contains("__netrun_json:echo"),
            "{err}"
        );
    }

    #[test]
    fn explains_each_kind_of_bad_file() {
        let not_wasm = parse(Path::new("x.txt"), b"hello world".to_vec()).unwrap_err();
        assert!(
            not_wasm
                .to_string()
                .contains("x.txt is not a WebAssembly module")
        );
        let bare = parse(Path::new("bare.wasm"), wat::parse_str("(module)").unwrap()).unwrap_err();
        assert!(matches!(bare, LoadError::NoManifest { .. }));
        let mut other_abi = echo_record();
        other_abi[4..8].copy_from_slice(&7u32.to_le_bytes());
        let err = parse(Path::new("old.wasm"), module_with(&other_abi, &[])).unwrap_err();
        assert!(err.to_string().contains("ABI version 7"), "{err}");
    }
}
