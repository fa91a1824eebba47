//! Support for the integration tests: the one place that knows where the binary and the apps
//! are, hands out ports, starts `netrun` processes, collects what they print and cleans up after
//! them. Tests live in `tests/tests/*.rs` and use only this module; none of them spells a path,
//! a port or a `Command` of its own.
//!
//! # Layout
//!
//! - Paths: [`root`], [`netrun_bin`] (`$NETRUN_BIN`, else `target/release/netrun`) and [`app`]
//!   (`target/apps/<name>.wasm`). Both are built by `make build`, which `make test` runs first; a
//!   missing one fails the test with a message that says so.
//! - Ports: [`Ports`] hands every test a block of its own, so tests running in parallel threads
//!   never see each other's peers: peers bind the first free port of the block's first
//!   [`PEER_RANGE`] ports and discovery (`netrun peers`, the guest's `net::peers`) scans exactly
//!   those, because every process gets the block's `NET_PORT`/`NET_PORT_RANGE`. The one
//!   fixed block, [`Ports::pinned`], is for the fixture that names an address; [`Ports::silent`]
//!   is a listener that never answers.
//! - Processes: [`TestPeer`] is a serving `netrun run APP`, started and waited for until it prints
//!   its `peer <ID> listening on <HOST>:<PORT>` line; [`netrun`], [`call`] and [`run_entry`] run a
//!   command to completion, and [`make`] a make target; [`netrun_unset`] and
//!   [`TestPeer::start_unset`] leave variables out, for tests of defaults. Every process is
//!   killed when its owner is dropped, also when the
//!   test panics, and gets SIGKILL when the thread that started it ends, so a killed test run
//!   leaves nothing behind (`PR_SET_PDEATHSIG`; start a test's processes on its own thread).
//! - Hosts: [`netns::TestNet`] builds networks of namespaces (subnets, hosts, a router) for
//!   the cross-host tests, and removes them; [`TestPeer::start_on`] and [`netrun_on`] run on a
//!   host.
//! - Faults: [`TestPeer::freeze`] (SIGSTOP until dropped), and [`Proxy`], a loopback proxy that
//!   cuts the connections it carries on demand.
//! - app-net: [`appnet`] makes a virtualenv with the real Python package and runs its peers
//!   ([`appnet::PythonPeer`]) and scripts, on loopback only.
//! - Fixtures: [`Scratch`] files removed on drop, and hand-made wasm modules in [`wasm`].
//!
//! Network rule: everything binds and calls 127.0.0.1 only. Every wait is a poll with a deadline;
//! a process that overruns its deadline is killed and the test fails with everything it printed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The only address tests use.
pub const HOST: &str = "127.0.0.1";
/// How long a peer may take to start listening (it compiles the module first).
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a command or an entry may run before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);
/// How long a peer may take to exit after SIGTERM/SIGINT.
pub const STOP_LIMIT: Duration = Duration::from_secs(15);
/// Ports per test that peers may bind: `start..start + PEER_RANGE` (`NET_PORT_RANGE`).
pub const PEER_RANGE: u16 = 5;
/// Ports per block: the ones past [`PEER_RANGE`] are never bound by a peer of the test (see
/// [`Ports::unused`]).
pub const BLOCK: u16 = 10;
/// Blocks come from `PORT_FLOOR..PORT_FLOOR + PORT_SPAN`, below Linux's ephemeral range
/// (32768 and up), so the local port of some outgoing connection never lands in a block.
const PORT_FLOOR: u16 = 20_000;
const PORT_SPAN: u16 = 12_000;

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
        path.is_file(),
        "{} is missing: run `make build` first (`make test` does)",
        path.display()
    );
    path
}

/// An app built by `make build`: `target/apps/<name>.wasm`.
pub fn app(name: &str) -> PathBuf {
    let path = root().join("target/apps").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make build` first (`make test` does)",
        path.display()
    );
    path
}

/// `path` as the `&str` a command line takes.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A block of [`BLOCK`] ports of this test's own; everything the test starts gets its
/// `NET_PORT`/`NET_PORT_RANGE`.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub start: u16,
}

impl Ports {
    /// A fresh block, every port of which is free right now. Blocks are handed out by a
    /// process-wide counter starting at an offset taken from the process id, so test binaries
    /// that happen to run at the same time start far apart.
    pub fn new() -> Ports {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let blocks = u32::from(PORT_SPAN / BLOCK);
        let first = std::process::id() % blocks;
        for _ in 0..blocks {
            let block = (first + NEXT.fetch_add(1, Ordering::Relaxed)) % blocks;
            let start = PORT_FLOOR + u16::try_from(block).expect("< PORT_SPAN") * BLOCK;
            if (start..start + BLOCK).all(|port| std::net::TcpListener::bind((HOST, port)).is_ok())
            {
                return Ports { start };
            }
        }
        panic!("no free block of {BLOCK} ports on {HOST} from {PORT_FLOOR} on");
    }

    /// A run of `ports` free ports, for a process that needs more peers in one range than a
    /// block holds (the benchmark's fan-out): use its `start` as `NET_PORT` and `ports` as
    /// `NET_PORT_RANGE`. Not for tests that run in parallel: it may overlap their blocks.
    pub fn wide(ports: u16) -> Ports {
        let mut start = PORT_FLOOR + PORT_SPAN;
        while let Some(end) = start.checked_add(ports) {
            if (start..end).all(|port| std::net::TcpListener::bind((HOST, port)).is_ok()) {
                return Ports { start };
            }
            start = end;
        }
        panic!(
            "no {ports} free ports in a row on {HOST} above {}",
            PORT_FLOOR + PORT_SPAN
        );
    }

    /// The environment that puts a process in this block.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NET_HOST".into(), HOST.into()),
            ("NET_PORT".into(), self.start.to_string()),
            ("NET_PORT_RANGE".into(), PEER_RANGE.to_string()),
        ]
    }

    /// The id a peer of `group` listening on `port` has.
    pub fn id_of(port: u16, group: &str) -> String {
        netrun_abi::peer_id::encode(HOST, port, group)
    }

    /// A port of the block that no peer of the test binds (`index` in `PEER_RANGE..BLOCK`),
    /// checked to have no listener: calling it finds nobody.
    pub fn unused(&self, index: u16) -> u16 {
        assert!(
            (PEER_RANGE..BLOCK).contains(&index),
            "index {index} is not outside the peers' range"
        );
        let port = self.start + index;
        assert!(
            std::net::TcpListener::bind((HOST, port)).is_ok(),
            "port {port} was expected to be free"
        );
        port
    }
}

/// Something listening on a port of a block that accepts connections (the kernel does) and
/// never says a word: a call to it times out. Closed on drop.
pub struct Silent {
    _listener: std::net::TcpListener,
    id: String,
}

impl Silent {
    /// The peer id of its address, in group `None`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Ports {
    /// A [`Silent`] listener on the port [`Ports::unused`] gives for `index`.
    pub fn silent(&self, index: u16) -> Silent {
        let port = self.unused(index);
        let listener = std::net::TcpListener::bind((HOST, port))
            .unwrap_or_else(|e| panic!("cannot bind {HOST}:{port}: {e}"));
        Silent {
            _listener: listener,
            id: Ports::id_of(port, "None"),
        }
    }

    /// The block that starts at [`PINNED_PORT`], for the test of a subscription that names
    /// its publisher's address (`peers = ["127.0.0.1:19990"]` in `events_probe`): the first
    /// peer started in it binds that port. One test at a time on this machine holds it, across
    /// test binaries and checkouts: the lock is a listener on the block's last port, which the
    /// kernel frees when the holder exits, however it exits.
    pub fn pinned() -> Pinned {
        let lock_port = PINNED_PORT + BLOCK - 1;
        let mut lock = None;
        let free = wait_until(RUN_LIMIT, || {
            if lock.is_none() {
                lock = std::net::TcpListener::bind((HOST, lock_port)).ok();
            }
            // A previous holder's peers are gone once it let go, but look anyway.
            lock.is_some()
                && (PINNED_PORT..PINNED_PORT + PEER_RANGE)
                    .all(|port| std::net::TcpListener::bind((HOST, port)).is_ok())
        });
        assert!(
            free,
            "ports {PINNED_PORT}..{} on {HOST} stayed taken for {RUN_LIMIT:?}",
            PINNED_PORT + BLOCK
        );
        Pinned {
            ports: Ports { start: PINNED_PORT },
            _lock: lock.expect("bound"),
        }
    }
}

/// The port `events_probe`'s `pinned_news` subscribes on (its `peers = ["127.0.0.1:19990"]`);
/// see [`Ports::pinned`]. Below [`PORT_FLOOR`], so no ordinary block contains it.
pub const PINNED_PORT: u16 = 19_990;
const _: () = assert!(
    PINNED_PORT + BLOCK <= PORT_FLOOR,
    "the pinned block overlaps others"
);

/// The block at [`PINNED_PORT`], held until dropped (declare it before the test's peers, so that
/// they are gone when it is released).
pub struct Pinned {
    pub ports: Ports,
    _lock: std::net::TcpListener,
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new()
    }
}

/// What a process runs, and the environment it gets on top of its block's.
struct Spec<'a> {
    /// `None`: the `netrun` binary.
    program: Option<&'a str>,
    args: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    /// Variables removed after the block's and `env` are set (a test of a default).
    unset: &'a [&'a str],
    /// The network namespace to run it in (a host of a [`netns::TestNet`]); `None`: this one.
    netns: Option<&'a str>,
    /// Where its stdout goes; `None`: a pipe the test reads.
    stdout: Option<Output>,
    /// Where its stderr goes; `None`: a pipe the test reads.
    stderr: Option<Output>,
}

/// Which of a command's output streams [`netrun_writing_to`] sends elsewhere.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a command's stdout or stderr goes, other than to the test.
#[derive(Debug, Clone, Copy)]
pub enum Output {
    /// A pipe whose reader has gone, as with `netrun … | head -1` once `head` has its line:
    /// every write fails with `EPIPE`.
    ClosedPipe,
    /// `/dev/full`: every write fails with `ENOSPC`.
    Full,
}

impl Output {
    fn stdio(self) -> Stdio {
        match self {
            Output::ClosedPipe => {
                let (reader, writer) = std::io::pipe().expect("a pipe");
                drop(reader);
                writer.into()
            }
            Output::Full => std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full opens for writing")
                .into(),
        }
    }
}

impl<'a> Spec<'a> {
    fn netrun(args: &'a [&'a str], env: &'a [(&'a str, &'a str)]) -> Spec<'a> {
        Spec {
            program: None,
            args,
            env,
            unset: &[],
            netns: None,
            stdout: None,
            stderr: None,
        }
    }

    /// The command line, for messages.
    fn what(&self) -> String {
        let host = self.netns.map(|ns| format!("[{ns}] ")).unwrap_or_default();
        format!(
            "{host}{} {}",
            self.program.unwrap_or("netrun"),
            self.args.join(" ")
        )
    }
}

/// What `cargo test` sets for the test binary that the user's shell does not have (prefixes).
/// A `make` run by a test must not see them: ring's build script reruns when
/// `CARGO_MANIFEST_DIR` changes, so the `cargo build` inside would rebuild ring, snow and
/// netrun instead of reusing the build `make test` made.
const CARGO_TEST_RUN_VARIABLES: [&str; 6] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// The program of `spec` (by default `netrun`), run in the workspace root with the block's
/// environment on top of `spec.env`, none of the caller's `NET_*` (nor what `cargo test` adds
/// for the test binary), and `spec.unset` removed.
fn command(ports: &Ports, spec: &Spec, stdin: Stdio) -> Command {
    let program = match spec.program {
        None => netrun_bin().into_os_string(),
        Some(program) => program.into(),
    };
    let mut cmd = match spec.netns {
        None => Command::new(program),
        Some(ns) => {
            let mut ip = Command::new("ip");
            ip.args(["netns", "exec", ns]).arg(program);
            ip
        }
    };
    cmd.args(spec.args).current_dir(root());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("NET_") || CARGO_TEST_RUN_VARIABLES.iter().any(|v| name.starts_with(v))
        {
            cmd.env_remove(key);
        }
    }
    cmd.envs(ports.env());
    // Compiled modules go to a cache of the tests' own, not to the user's.
    cmd.env(
        "NET_CACHE_DIR",
        root().join("target").join("netrun-test-cache"),
    );
    cmd.envs(spec.env.iter().copied());
    for name in spec.unset {
        cmd.env_remove(name);
    }
    cmd.stdin(stdin)
        .stdout(spec.stdout.map_or_else(Stdio::piped, Output::stdio))
        .stderr(spec.stderr.map_or_else(Stdio::piped, Output::stdio));
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent. The child gets
    // SIGKILL when the thread that spawned it ends, so nothing outlives a test that is killed
    // (its test thread is where every process of a test is started and owned).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// How much of what a child prints is kept (and echoed); past it, lines are only counted, so a
/// test of a guest that floods its output does not hold the flood.
const CAPTURE_LIMIT: usize = 4 << 20;

/// What a child wrote to one pipe, collected as it arrives (an unfinished line too, such as a
/// prompt) by a reader thread that also echoes each line to the test's stderr (shown when the
/// test fails): the first [`CAPTURE_LIMIT`] bytes, and how many lines and bytes came in all.
#[derive(Clone, Default)]
struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    counts: Arc<Mutex<OutputCounts>>,
    closed: Arc<AtomicBool>,
}

/// How much a child printed on one pipe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputCounts {
    pub lines: u64,
    pub bytes: u64,
}

/// Whether children's output is echoed to stderr, line by line with the child's label (a test
/// run shows it for a failing test only; the benchmark turns it off).
static ECHO: AtomicBool = AtomicBool::new(true);

/// Turns the echo of children's output on or off, for every process started after.
pub fn echo_output(on: bool) {
    ECHO.store(on, Ordering::Relaxed);
}

impl Captured {
    /// [`Captured::spawn`] on `pipe`; a stream that goes elsewhere (`Spec::stdout`,
    /// `Spec::stderr`) has no pipe, and nothing to collect.
    fn spawn_if_piped(pipe: Option<impl Read + Send + 'static>, label: String) -> Captured {
        match pipe {
            Some(pipe) => Captured::spawn(pipe, label),
            None => Captured::spawn(std::io::empty(), label),
        }
    }

    fn spawn(mut pipe: impl Read + Send + 'static, label: String) -> Captured {
        let captured = Captured::default();
        let (bytes, counts, closed) = (
            captured.bytes.clone(),
            captured.counts.clone(),
            captured.closed.clone(),
        );
        let echoed = ECHO.load(Ordering::Relaxed);
        std::thread::spawn(move || {
            let mut chunk = vec![0; 64 * 1024];
            let mut echo = Vec::new();
            loop {
                let read = match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => &chunk[..read],
                };
                {
                    let mut counts = counts.lock().expect("capture lock");
                    counts.lines += read.iter().filter(|&&b| b == b'\n').count() as u64;
                    counts.bytes += read.len() as u64;
                }
                let mut bytes = bytes.lock().expect("capture lock");
                if bytes.len() < CAPTURE_LIMIT {
                    bytes.extend_from_slice(read);
                    if echoed {
                        echo.extend_from_slice(read);
                    }
                    while let Some(end) = echo.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = echo.drain(..=end).collect();
                        eprintln!("[{label}] {}", String::from_utf8_lossy(&line[..end]));
                    }
                }
            }
            if !echo.is_empty() {
                eprintln!("[{label}] {}", String::from_utf8_lossy(&echo));
            }
            closed.store(true, Ordering::Release);
        });
        captured
    }

    /// The complete lines so far (everything, once the pipe closed).
    fn text(&self) -> String {
        let bytes = self.bytes.lock().expect("capture lock");
        let end = if self.closed.load(Ordering::Acquire) {
            bytes.len()
        } else {
            bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
        };
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Everything so far, an unfinished last line included.
    fn text_and_unfinished(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("capture lock")).into_owned()
    }

    fn counts(&self) -> OutputCounts {
        *self.counts.lock().expect("capture lock")
    }

    /// Waits until the writer closed the pipe and every byte is in.
    fn wait_closed(&self, limit: Duration) -> bool {
        wait_until(limit, || self.closed.load(Ordering::Acquire))
    }
}

/// A started `netrun` process with its output being collected.
struct Process {
    child: Child,
    stdout: Captured,
    stderr: Captured,
    /// The command line, for messages.
    what: String,
}

impl Process {
    fn spawn(ports: &Ports, spec: &Spec, stdin: Stdio) -> Process {
        let what = spec.what();
        let mut child = command(ports, spec, stdin)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let label = format!(
            "{}{} {}",
            spec.netns.map(|ns| format!("{ns} ")).unwrap_or_default(),
            spec.program
                .or(spec.args.first().copied())
                .unwrap_or("netrun"),
            child.id()
        );
        let stdout = Captured::spawn_if_piped(child.stdout.take(), format!("{label} out"));
        let stderr = Captured::spawn_if_piped(child.stderr.take(), format!("{label} err"));
        Process {
            child,
            stdout,
            stderr,
            what,
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on our own child")
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold its `Child`).
        unsafe { libc::kill(pid, signal) };
    }

    fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// What it printed so far, for failure messages.
    fn report(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.what,
            self.stdout.text(),
            self.stderr.text()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 20 ms until it holds (true) or `limit` passes (false).
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

/// What a peer's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// `/dev/null` (the default).
    Null,
    /// A pipe the test writes to: [`TestPeer::stdin`].
    Piped,
}

/// A serving `netrun run APP` process, killed on drop.
pub struct TestPeer {
    process: Process,
    id: String,
    host: String,
    port: u16,
}

impl TestPeer {
    /// Starts `netrun run APP ARGS…` in `ports` and waits until it prints its listening line.
    pub fn start(ports: &Ports, app: &Path, args: &[&str], env: &[(&str, &str)]) -> TestPeer {
        TestPeer::start_with(ports, app, args, env, Input::Null)
    }

    /// [`TestPeer::start`] with a choice of stdin.
    pub fn start_with(
        ports: &Ports,
        app: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        input: Input,
    ) -> TestPeer {
        let mut all = vec!["run", arg(app)];
        all.extend_from_slice(args);
        TestPeer::start_command(ports, &all, env, input)
    }

    /// Starts `netrun ARGS…` (any spelling of serving, such as the `netrun APP` shorthand) in
    /// `ports` and waits until it prints its listening line.
    pub fn start_command(
        ports: &Ports,
        all: &[&str],
        env: &[(&str, &str)],
        input: Input,
    ) -> TestPeer {
        TestPeer::start_spec(ports, &Spec::netrun(all, env), input)
    }

    /// [`TestPeer::start_command`] without the variables `unset` (the block's `NET_PORT`, the
    /// tests' `NET_CACHE_DIR`…), for tests of what a peer does by default.
    pub fn start_unset(
        ports: &Ports,
        all: &[&str],
        env: &[(&str, &str)],
        unset: &[&str],
    ) -> TestPeer {
        let spec = Spec {
            unset,
            ..Spec::netrun(all, env)
        };
        TestPeer::start_spec(ports, &spec, Input::Null)
    }

    /// [`TestPeer::start`] on `host`, a network namespace of a [`netns::TestNet`].
    pub fn start_on(
        ports: &Ports,
        host: &netns::Host,
        app: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestPeer {
        let all: Vec<&str> = ["run", arg(app)]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let spec = Spec {
            netns: Some(&host.namespace),
            ..Spec::netrun(&all, env)
        };
        TestPeer::start_spec(ports, &spec, Input::Null)
    }

    fn start_spec(ports: &Ports, spec: &Spec, input: Input) -> TestPeer {
        let stdin = match input {
            Input::Null => Stdio::null(),
            Input::Piped => Stdio::piped(),
        };
        let mut process = Process::spawn(ports, spec, stdin);
        let listening = |p: &Process| p.stdout.text().lines().find_map(parse_listening);
        let mut found = None;
        wait_until(START_LIMIT, || {
            found = listening(&process);
            found.is_some() || process.exited().is_some()
        });
        let Some((id, host, port)) = found.or_else(|| listening(&process)) else {
            let status = process.exited();
            process.kill();
            process.stdout.wait_closed(Duration::from_secs(2));
            process.stderr.wait_closed(Duration::from_secs(2));
            let why = match status {
                Some(status) => format!("exited ({status})"),
                None => format!("was still silent after {START_LIMIT:?}; killed"),
            };
            panic!(
                "peer {why} without printing `peer <ID> listening on <HOST>:<PORT>`\n{}",
                process.report()
            );
        };
        let address = netrun_abi::peer_id::decode(&id)
            .unwrap_or_else(|e| panic!("the listening line's id: {e}\n{}", process.report()));
        assert_eq!(
            (address.host.as_str(), address.port),
            (host.as_str(), port),
            "the id does not carry the address the peer listens on\n{}",
            process.report()
        );
        TestPeer {
            process,
            id,
            host,
            port,
        }
    }

    /// A `core_probe` peer serving with no extra arguments.
    pub fn probe(ports: &Ports, env: &[(&str, &str)]) -> TestPeer {
        TestPeer::start(ports, &app("core_probe"), &[], env)
    }

    /// The id from its listening line.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host from its listening line.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port from its listening line.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The lines it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.process.stdout.text()
    }

    /// Everything it printed on stdout so far, a last line it has not finished (a prompt)
    /// included.
    pub fn stdout_and_unfinished(&self) -> String {
        self.process.stdout.text_and_unfinished()
    }

    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr.text()
    }

    /// How many lines and bytes it printed on stdout so far (the text keeps only the first few
    /// MiB).
    pub fn stdout_counts(&self) -> OutputCounts {
        self.process.stdout.counts()
    }

    /// The most memory the process has had resident so far (`VmHWM` of
    /// `/proc/<pid>/status`), in KiB.
    pub fn peak_memory_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Its resident memory now (`VmRSS`), in KiB.
    pub fn resident_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// A `kB` line of `/proc/PID/status`.
    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.process.child.id());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}\n{}", self.report()));
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} line in {path}:\n{status}"))
    }

    /// Its stdin, when started with [`Input::Piped`] (once).
    pub fn stdin(&mut self) -> ChildStdin {
        self.process
            .child
            .stdin
            .take()
            .expect("started with Input::Piped, stdin taken once")
    }

    /// Waits (bounded) until its stdout contains `text`.
    pub fn wait_for_stdout(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || self.stdout().contains(text))
    }

    /// Waits (bounded) until its stderr contains `text`.
    pub fn wait_for_stderr(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || self.stderr().contains(text))
    }

    /// Whether it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// Waits up to `limit` for it to exit by itself (no signal); `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.process.wait(limit)
    }

    /// Sends SIGTERM and waits up to `limit` for it to exit; kills it if it does not. Returns
    /// the exit status, or `None` if it had to be killed.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.stop_with(libc::SIGTERM, limit)
    }

    /// Like [`TestPeer::terminate`] with another signal (SIGINT: Ctrl-C).
    pub fn stop_with(&mut self, signal: libc::c_int, limit: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.process.exited() {
            return Some(status);
        }
        self.process.signal(signal);
        let status = self.process.wait(limit);
        if status.is_none() {
            self.process.kill();
        }
        status
    }

    /// Kills it at once (SIGKILL).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Freezes it (SIGSTOP) until the guard is dropped (SIGCONT): it keeps its port, and the
    /// kernel still accepts connections for it, but it answers nothing, as a hung machine.
    pub fn freeze(&self) -> Frozen<'_> {
        self.process.signal(libc::SIGSTOP);
        Frozen(self)
    }

    /// Its command line and everything it printed, for failure messages.
    pub fn report(&self) -> String {
        self.process.report()
    }
}

/// A [`TestPeer`] frozen by [`TestPeer::freeze`]; thawed when dropped.
pub struct Frozen<'a>(&'a TestPeer);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.process.signal(libc::SIGCONT);
    }
}

/// A loopback TCP proxy to a peer, on a port of a test's block, that can cut every connection
/// it carries at once ([`Proxy::cut`]), as a failing network would. Stops, and cuts what it
/// carries, when dropped.
pub struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    carried: Arc<Mutex<Vec<std::net::TcpStream>>>,
    /// Every byte it carried, both ways.
    seen: Arc<Mutex<Vec<u8>>>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on the port [`Ports::unused`] gives for `index` and forwards every connection
    /// to `HOST:to`.
    pub fn start(ports: &Ports, index: u16, to: u16) -> Proxy {
        let port = ports.unused(index);
        let listener = std::net::TcpListener::bind((HOST, port))
            .unwrap_or_else(|e| panic!("cannot bind the proxy at {HOST}:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("a nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepting = {
            let (stop, carried, seen) = (stop.clone(), carried.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => Proxy::carry(client, to, &carried, &seen),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        Proxy {
            port,
            stop,
            carried,
            seen,
            accepting: Some(accepting),
        }
    }

    /// Connects `client` to `HOST:to` and copies bytes both ways, each on a thread of its own.
    fn carry(
        client: std::net::TcpStream,
        to: u16,
        carried: &Mutex<Vec<std::net::TcpStream>>,
        seen: &Arc<Mutex<Vec<u8>>>,
    ) {
        client.set_nonblocking(false).expect("a blocking stream");
        let Ok(server) = std::net::TcpStream::connect((HOST, to)) else {
            return;
        };
        let mut list = carried.lock().expect("carried lock");
        for (from, into) in [(&client, &server), (&server, &client)] {
            let (mut from, mut into) = (
                from.try_clone().expect("a stream clone"),
                into.try_clone().expect("a stream clone"),
            );
            let seen = seen.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut chunk = [0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    seen.lock()
                        .expect("seen lock")
                        .extend_from_slice(&chunk[..n]);
                    if into.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                }
                let _ = into.shutdown(std::net::Shutdown::Both);
            });
        }
        list.extend([client, server]);
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every byte it carried so far, both ways.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// `HOST:PORT` of the proxy, which `netrun call` and `netrun info` take as a peer.
    pub fn address(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    /// Cuts every connection it carries, both ways, at once.
    pub fn cut(&self) {
        for stream in self.carried.lock().expect("carried lock").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// `peer <ID> listening on <HOST>:<PORT>` → (id, host, port).
fn parse_listening(line: &str) -> Option<(String, String, u16)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["peer", id, "listening", "on", address] = words[..] else {
        return None;
    };
    let (host, port) = address.rsplit_once(':')?;
    Some((id.to_string(), host.to_string(), port.parse().ok()?))
}

/// What a finished `netrun` command left.
#[derive(Debug)]
pub struct CliOutput {
    /// The command line.
    pub command: String,
    /// Exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CliOutput {
    /// Panics with everything the command said unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn expect_stderr(&self, needles: &[&str]) -> &Self {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "{needle:?} missing from stderr\n{self}"
            );
        }
        self
    }

    /// Stdout parsed as one JSON value (panics with the output if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{self}"))
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} → exit {:?} after {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command, self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `netrun ARGS…` in `ports` to completion; past [`RUN_LIMIT`] it is killed and the test
/// fails with what it printed.
pub fn netrun(ports: &Ports, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    run_to_end(ports, &Spec::netrun(args, env))
}

/// [`netrun`] without the variables `unset`, for tests of defaults.
pub fn netrun_unset(
    ports: &Ports,
    args: &[&str],
    env: &[(&str, &str)],
    unset: &[&str],
) -> CliOutput {
    let spec = Spec {
        unset,
        ..Spec::netrun(args, env)
    };
    run_to_end(ports, &spec)
}

/// [`netrun`] on `host`, a network namespace of a [`netns::TestNet`].
pub fn netrun_on(
    ports: &Ports,
    host: &netns::Host,
    args: &[&str],
    env: &[(&str, &str)],
) -> CliOutput {
    let spec = Spec {
        netns: Some(&host.namespace),
        ..Spec::netrun(args, env)
    };
    run_to_end(ports, &spec)
}

/// [`netrun`] with its `stream` going to `output` rather than to the test.
pub fn netrun_writing_to(
    ports: &Ports,
    stream: Stream,
    output: Output,
    args: &[&str],
    env: &[(&str, &str)],
) -> CliOutput {
    let base = Spec::netrun(args, env);
    let spec = match stream {
        Stream::Stdout => Spec {
            stdout: Some(output),
            ..base
        },
        Stream::Stderr => Spec {
            stderr: Some(output),
            ..base
        },
    };
    run_to_end(ports, &spec)
}

/// Runs `make ARGS…` in the workspace root, in `ports` (the peers it starts bind the block's
/// ports, through the `NET_*` variables), to completion.
pub fn make(ports: &Ports, args: &[&str]) -> CliOutput {
    let spec = Spec {
        program: Some("make"),
        ..Spec::netrun(args, &[])
    };
    run_to_end(ports, &spec)
}

fn run_to_end(ports: &Ports, spec: &Spec) -> CliOutput {
    let started = Instant::now();
    let mut process = Process::spawn(ports, spec, Stdio::null());
    let Some(status) = process.wait(RUN_LIMIT) else {
        process.kill();
        process.stdout.wait_closed(Duration::from_secs(2));
        process.stderr.wait_closed(Duration::from_secs(2));
        panic!(
            "did not finish within {RUN_LIMIT:?}; killed\n{}",
            process.report()
        );
    };
    let elapsed = started.elapsed();
    // The pipes close when the process is gone; the readers then have every byte.
    let drained = process.stdout.wait_closed(Duration::from_secs(10))
        && process.stderr.wait_closed(Duration::from_secs(10));
    assert!(drained, "output pipes still open\n{}", process.report());
    CliOutput {
        command: process.what.clone(),
        code: status.code(),
        stdout: process.stdout.text(),
        stderr: process.stderr.text(),
        elapsed,
    }
}

/// `netrun call PEER FUNCTION ARGS…` in `ports`.
pub fn call(ports: &Ports, peer: &str, function: &str, args: &[&str]) -> CliOutput {
    let mut all = vec!["call", peer, function];
    all.extend_from_slice(args);
    netrun(ports, &all, &[])
}

/// `netrun info PEER` in `ports`, as JSON (panics with the output unless it succeeds).
#[track_caller]
pub fn info(ports: &Ports, peer: &str) -> Value {
    let out = netrun(ports, &["info", peer], &[]);
    out.expect_code(0);
    out.json()
}

/// The `(event, peer id, handler)` triples of an `info` list (`subscribers` or
/// `subscriptions`).
pub fn subscription_list(info: &Value, list: &str) -> Vec<(String, String, String)> {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    info[list]
        .as_array()
        .unwrap_or_else(|| panic!("info has no {list} list: {info}"))
        .iter()
        .map(|s| (text(s, "event"), text(s, "peer"), text(s, "handler")))
        .collect()
}

/// Waits (bounded) until `info` of `peer` satisfies `condition`; returns the last `info`.
pub fn wait_for_info(
    ports: &Ports,
    peer: &str,
    limit: Duration,
    mut condition: impl FnMut(&Value) -> bool,
) -> (bool, Value) {
    let mut last = Value::Null;
    let met = wait_until(limit, || {
        last = info(ports, peer);
        // Each poll starts a process: poll calmly.
        condition(&last) || {
            std::thread::sleep(Duration::from_millis(200));
            false
        }
    });
    (met, last)
}

/// `netrun run APP --entry ENTRY` in `ports`, to completion.
pub fn run_entry(ports: &Ports, app: &Path, entry: &str, env: &[(&str, &str)]) -> CliOutput {
    netrun(ports, &["run", arg(app), "--entry", entry], env)
}

/// A scratch directory of the test's own, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netrun-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }

    /// Writes `bytes` to `name` inside; returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// A path inside that does not exist.
    pub fn missing(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hand-made files for the bad-input tests, written byte by byte so they do not depend on the
/// SDK or the runtime being right.
pub mod netns;

pub mod appnet;

pub mod wasm {
    /// The smallest valid module: magic and version, nothing else (so no netrun manifest).
    pub const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// A file that is not wasm at all.
    pub const NOT_WASM: &[u8] = b"hello, I am a text file, not a WebAssembly module\n";

    /// `value` as unsigned LEB128, as wasm writes sizes.
    pub fn leb128(mut value: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A custom section (id 0) named `name` holding `content`.
    pub fn custom_section(name: &str, content: &[u8]) -> Vec<u8> {
        let name_len = u32::try_from(name.len()).expect("short name");
        let mut body = leb128(name_len);
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(content);
        let mut section = vec![0];
        section.extend(leb128(u32::try_from(body.len()).expect("small section")));
        section.extend(body);
        section
    }

    /// One manifest record framed by hand as the ABI crate documents it: `b"nrmf"`, the ABI
    /// version (u32 LE), the payload length (u32 LE), the payload.
    pub fn manifest_record(abi_version: u32, payload: &[u8]) -> Vec<u8> {
        let mut record = b"nrmf".to_vec();
        record.extend_from_slice(&abi_version.to_le_bytes());
        let len = u32::try_from(payload.len()).expect("small payload");
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(payload);
        record
    }

    /// A module whose only content is a `netrun.manifest` custom section holding one record
    /// framed for ABI version `abi_version`.
    pub fn with_manifest_for_abi(abi_version: u32) -> Vec<u8> {
        let record = manifest_record(abi_version, b"a record of some other ABI");
        let mut module = EMPTY_MODULE.to_vec();
        module.extend(custom_section(netrun_abi::names::MANIFEST_SECTION, &record));
        module
    }

    /// A module that fits the ABI's exports but breaks the hand-over of buffers
    /// (`netrun_abi::names::HELD`) in each of its three functions, all `() -> u32`, each
    /// exported for bincode and JSON: `silent` takes its arguments and returns without handing
    /// an outcome over; `greedy` asks for one byte more than the host holds; `garbled` hands
    /// over three bytes that are no outcome.
    pub fn breaking_the_handover() -> Vec<u8> {
        let functions = ["silent", "greedy", "garbled"];
        let exports: String = functions
            .iter()
            .map(|f| {
                format!(r#"(export "__netrun_fn:{f}" (func ${f})) (export "__netrun_json:{f}" (func ${f}))"#)
            })
            .collect();
        let mut module = wat::parse_str(format!(
            r#"(module
                (import "net" "input" (func $input (param i32 i32)))
                (import "net" "output" (func $output (param i32 i32)))
                (memory (export "memory") 1)
                (data (i32.const 0) "\ff\ff\ff")
                (func (export "netrun_alloc") (param i32) (result i32) (i32.const 1024))
                (func (export "netrun_free") (param i32 i32))
                (func $silent (param i32 i32) (result i64)
                    (call $input (i32.const 1024) (local.get 1))
                    (i64.const 0))
                (func $greedy (param i32 i32) (result i64)
                    (call $input (i32.const 1024) (i32.add (local.get 1) (i32.const 1)))
                    (i64.const 0))
                (func $garbled (param i32 i32) (result i64)
                    (call $input (i32.const 1024) (local.get 1))
                    (call $output (i32.const 0) (i32.const 3))
                    (i64.const 0))
                {exports})"#
        ))
        .expect("the module's text is valid");
        let mut section = Vec::new();
        for f in functions {
            let record = netrun_abi::manifest::Record::new(
                netrun_abi::manifest::ItemKind::Connect,
                f,
                f,
                Vec::new(),
                "u32",
            );
            section.extend(record.to_section_bytes());
        }
        module.extend(custom_section(
            netrun_abi::names::MANIFEST_SECTION,
            &section,
        ));
        module
    }

    /// A module that fits the ABI (the allocator exports, an entry `go` in its manifest) and
    /// traps as soon as anything instantiates it: its start function is `unreachable`. Serving
    /// it fails; only reading it succeeds.
    pub fn trapping_on_start() -> Vec<u8> {
        let mut module = wat::parse_str(
            r#"(module
                (memory (export "memory") 1)
                (func (export "netrun_alloc") (param i32) (result i32) (i32.const 0))
                (func (export "netrun_free") (param i32 i32))
                (func (export "__netrun_entry:go") (result i64) (i64.const 0))
                (func $trap unreachable)
                (start $trap))"#,
        )
        .expect("the module's text is valid");
        let entry = netrun_abi::manifest::Record::new(
            netrun_abi::manifest::ItemKind::Entry,
            "go",
            "go",
            Vec::new(),
            "()",
        );
        module.extend(custom_section(
            netrun_abi::names::MANIFEST_SECTION,
            &entry.to_section_bytes(),
        ));
        module
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn leb128_matches_the_spec_examples() {
            assert_eq!(leb128(0), [0]);
            assert_eq!(leb128(127), [0x7f]);
            assert_eq!(leb128(128), [0x80, 0x01]);
            assert_eq!(leb128(624_485), [0xe5, 0x8e, 0x26]);
        }

        #[test]
        fn the_wrong_abi_module_is_read_as_such_by_the_abi_crate() {
            let module = with_manifest_for_abi(99);
            let name = netrun_abi::names::MANIFEST_SECTION;
            // magic, version, section id, size, name length, name, then the record.
            let record = &module[8 + 1 + 1 + 1 + name.len()..];
            assert_eq!(module[8], 0);
            assert_eq!(usize::from(module[9]), module.len() - 10);
            assert_eq!(
                netrun_abi::manifest::decode_section(record),
                Err(netrun_abi::manifest::ManifestError::AbiVersion {
                    found: 99,
                    expected: netrun_abi::names::ABI_VERSION
                })
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line_and_nothing_else() {
        let id = Ports::id_of(20_001, "None");
        assert_eq!(
            parse_listening(&format!("peer {id} listening on 127.0.0.1:20001")),
            Some((id.clone(), "127.0.0.1".into(), 20_001))
        );
        assert_eq!(parse_listening("My Message!"), None);
        assert_eq!(parse_listening(&format!("peer {id} listening on x")), None);
    }

    #[test]
    fn blocks_do_not_overlap_and_stay_below_the_ephemeral_range() {
        let a = Ports::new();
        let b = Ports::new();
        assert!(a.start.abs_diff(b.start) >= BLOCK);
        for p in [a, b] {
            assert!(p.start >= PORT_FLOOR && p.start + BLOCK <= PORT_FLOOR + PORT_SPAN);
        }
    }
}
