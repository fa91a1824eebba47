//! Support for the integration tests: the one place that knows where the binary and the apps
//! are, hands out port ranges, starts `netrun` processes and cleans up after them.
//!
//! Every process a test starts is a [`TestPeer`] or goes through [`netrun`], and is killed when
//! the test ends, passed or failed (on drop). Tests bind and call only 127.0.0.1, each in its
//! own block of ports, so tests running in parallel never see each other's peers.
//!
//! The binary and the apps are built by `make build` (which `make test` runs first); a missing
//! one is a failure that says so.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a peer may take to start listening.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a command or an entry may run before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Ports per test: peers bind the first free one of `start..start + PEER_RANGE`.
pub const PEER_RANGE: u16 = 5;
const BLOCK: u16 = 10;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `netrun` binary: `$NETRUN_BIN`, else `target/release/netrun`.
pub fn netrun_bin() -> PathBuf {
    let path = std::env::var_os("NETRUN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/netrun"));
    assert!(
        path.exists(),
        "{} is missing: run `make build` first",
        path.display()
    );
    path
}

/// An app built by `make build`: `target/apps/<name>.wasm`.
pub fn app(name: &str) -> PathBuf {
    let path = root().join("target/apps").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make build` first",
        path.display()
    );
    path
}

/// A block of ports of this test's own; `NET_PORT`/`NET_PORT_RANGE` for everything it starts.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub start: u16,
}

impl Ports {
    /// A fresh block, whose first port is free right now.
    pub fn new() -> Ports {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let base = 20_000 + (std::process::id() % 100) as u16 * 200;
        loop {
            let start = base + NEXT.fetch_add(BLOCK, Ordering::Relaxed) % 20_000;
            if std::net::TcpListener::bind(("127.0.0.1", start)).is_ok() {
                return Ports { start };
            }
        }
    }

    /// The environment that puts a process in this block.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NET_HOST".into(), "127.0.0.1".into()),
            ("NET_PORT".into(), self.start.to_string()),
            ("NET_PORT_RANGE".into(), PEER_RANGE.to_string()),
        ]
    }

    /// The id a peer of `group` at the `index`th port of the block has.
    pub fn id(&self, index: u16, group: &str) -> String {
        netrun_abi::peer_id::encode("127.0.0.1", self.start + index, group)
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

fn command(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(netrun_bin());
    cmd.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("NET_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(ports.env());
    cmd.envs(env.iter().map(|(k, v)| (*k, *v)));
    cmd
}

/// Output collected from a child's pipe by a reader thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn spawn(pipe: impl Read + Send + 'static, label: String) -> Captured {
        let captured = Captured::default();
        let sink = captured.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                eprintln!("[{label}] {line}");
                let mut text = sink.lock().expect("capture lock");
                text.push_str(&line);
                text.push('\n');
            }
        });
        captured
    }

    fn text(&self) -> String {
        self.0.lock().expect("capture lock").clone()
    }
}

/// Polls `condition` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `netrun run` process, killed on drop.
pub struct TestPeer {
    child: Child,
    stdout: Captured,
    stderr: Captured,
    id: String,
    port: u16,
}

impl TestPeer {
    /// Starts `netrun run APP ARGS…` in `ports` and waits until it listens.
    pub fn start(ports: &Ports, app: &Path, args: &[&str], env: &[(&str, &str)]) -> TestPeer {
        let mut all = vec!["run", app.to_str().expect("UTF-8 path")];
        all.extend_from_slice(args);
        let mut child = command(ports, &all, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("netrun starts");
        let label = format!("peer {}", child.id());
        let stdout = Captured::spawn(child.stdout.take().expect("stdout"), label.clone());
        let stderr = Captured::spawn(child.stderr.take().expect("stderr"), label);
        let mut peer = TestPeer {
            child,
            stdout,
            stderr,
            id: String::new(),
            port: 0,
        };
        let started = wait_until(START_LIMIT, || {
            peer.stdout
                .text()
                .lines()
                .any(|l| l.starts_with("peer ") && l.contains(" listening on "))
                || peer.exited().is_some()
        });
        let line = peer
            .stdout
            .text()
            .lines()
            .find(|l| l.starts_with("peer ") && l.contains(" listening on "))
            .map(str::to_string);
        let Some(line) = line.filter(|_| started) else {
            panic!(
                "netrun {all:?} did not start listening within {START_LIMIT:?}\nstdout:\n{}\nstderr:\n{}",
                peer.stdout(),
                peer.stderr()
            );
        };
        // "peer <ID> listening on <HOST>:<PORT>"
        let words: Vec<&str> = line.split_whitespace().collect();
        peer.id = words[1].to_string();
        peer.port = words[4]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        peer
    }

    /// Starts a core_probe peer with no extra arguments.
    pub fn probe(ports: &Ports, env: &[(&str, &str)]) -> TestPeer {
        TestPeer::start(ports, &app("core_probe"), &[], env)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stdout contains `text`.
    pub fn wait_for_stdout(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || self.stdout().contains(text))
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits for the exit (bounded); SIGKILL if it does not come.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let mut status = None;
        wait_until(limit, || {
            status = self.exited();
            status.is_some()
        });
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// Kills the process at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished `netrun` command left.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with everything the command said unless it exited with `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self:#?}");
        self
    }
}

/// Runs `netrun ARGS…` in `ports` to completion (killed after [`RUN_LIMIT`]).
pub fn netrun(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut child = command(ports, args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netrun starts");
    let label = format!("netrun {}", args.first().copied().unwrap_or(""));
    let stdout = Captured::spawn(child.stdout.take().expect("stdout"), label.clone());
    let stderr = Captured::spawn(child.stderr.take().expect("stderr"), label);
    let mut status = None;
    wait_until(RUN_LIMIT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "netrun {args:?} did not finish within {RUN_LIMIT:?}\nstdout:\n{}\nstderr:\n{}",
            stdout.text(),
            stderr.text()
        );
    };
    // The reader threads finish when the pipes close; give them a moment to drain.
    std::thread::sleep(Duration::from_millis(50));
    CliOutput {
        code: status.code(),
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// Runs `netrun run APP --entry ENTRY` in `ports` to completion.
pub fn run_entry(ports: &Ports, app: &Path, entry: &str, env: &[(&str, &str)]) -> CliOutput {
    netrun(
        ports,
        &["run", app.to_str().expect("UTF-8 path"), "--entry", entry],
        env,
    )
}

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "netrun-test-{}-{name}-{}",
            std::process::id(),
            Ports::new().start
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    /// Writes `bytes` to `name` inside; returns the path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hand-made wasm modules for the bad-input tests.
pub mod wasm {
    /// The smallest valid module: magic and version, nothing else.
    pub const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// A module whose only content is a `netrun.manifest` custom section holding one record
    /// framed for ABI version `abi_version`.
    pub fn with_manifest_for_abi(abi_version: u32) -> Vec<u8> {
        let payload = b"not a record of this ABI";
        let mut record = b"nrmf".to_vec();
        record.extend_from_slice(&abi_version.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(payload);
        let name = netrun_abi::names::MANIFEST_SECTION.as_bytes();
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name);
        body.extend_from_slice(&record);
        let mut module = EMPTY_MODULE.to_vec();
        module.push(0); // custom section
        assert!(body.len() < 128, "one-byte LEB128 size");
        module.push(body.len() as u8);
        module.extend_from_slice(&body);
        module
    }
}
