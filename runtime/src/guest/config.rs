//! What the guest of a peer may use and see: the limits of one call (`--deadline`,
//! `--max-memory`, `--fuel`), the grants beyond stdout and stderr (`--dir`, `--env`), and the
//! rest of the peer's settings that its instances need ([`GuestConfig`]).
//!
//! Plain values, parsed and named here; enforcing them is [`crate::guest::sandbox`]'s and
//! [`crate::guest::instance`]'s job.

use std::collections::BTreeMap;
use std::time::Duration;

use netrun_abi::manifest::Record;

/// What a peer's instances are set up with, shared by all of them.
#[derive(Debug, Clone)]
pub struct GuestConfig {
    /// What one call into an instance may use.
    pub limits: Limits,
    /// What the guest may see beyond stdout and stderr.
    pub grants: Grants,
    /// Whether instances get the process's stdin (a peer started with `--entry`).
    pub stdin: bool,
    /// Instances serving calls (`--workers`).
    pub workers: usize,
    /// The module's flag handlers, by flag name.
    pub flags: BTreeMap<String, Record>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_parse_host_guest_and_mode() {
        let tmp = std::env::temp_dir();
        let host = tmp.to_str().unwrap();
        let plain = DirGrant::parse(host).unwrap();
        assert_eq!((plain.guest.as_str(), plain.writable), (host, false));
        let mapped = DirGrant::parse(&format!("{host}:/data:rw")).unwrap();
        assert_eq!((mapped.guest.as_str(), mapped.writable), ("/data", true));
        assert!(!DirGrant::parse(&format!("{host}:/data")).unwrap().writable);
        assert_eq!(
            DirGrant::parse("/no/such/dir:/data"),
            Err("/no/such/dir: not a directory".to_string())
        );
        assert_eq!(
            DirGrant::parse(":/data"),
            Err("\":/data\": expected HOST[:GUEST][:rw]".to_string())
        );
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
}
