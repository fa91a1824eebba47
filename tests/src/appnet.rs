//! Real app-net peers for the interoperability tests: the Python package app-net
//! ([`APPNET_VERSION`], from PyPI) in a virtualenv the tests make once under `target/`, and
//! Python scripts run against it.
//!
//! app-net takes its address from `socket.gethostname()` and scans the LAN with `arp -a`; every
//! script runs through [`LAUNCHER`], which pins the host name to `127.0.0.1` and makes the LAN
//! scan fail, so nothing leaves loopback. A script is a peer ([`PythonPeer`], serving until
//! dropped) or a client run to completion ([`python`]); both get the test block's `NET_PORT`
//! and `NET_PORT_RANGE`, which app-net reads as netrun does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use crate::{CliOutput, Ports, Process, START_LIMIT, Scratch, Spec, root, run_to_end, wait_until};

/// The app-net release the tests run against.
pub const APPNET_VERSION: &str = "0.6.2";

/// Runs the script `argv[2]` with app-net confined to loopback; with `argv[1] == "serve"`, then
/// prints `ready PORT` and serves until killed.
pub const LAUNCHER: &str = r#"
import socket, subprocess, sys, time
socket.gethostname = lambda: "127.0.0.1"
def no_lan_scan(*args, **kwargs):
    raise OSError("the tests keep app-net on loopback: no arp -a")
subprocess.check_output = no_lan_scan
import net
net.HOST_IP = "127.0.0.1"
script = open(sys.argv[2]).read()
exec(compile(script, sys.argv[2], "exec"), {"__name__": "__main__", "net": net})
if sys.argv[1] == "serve":
    print("ready", net.Peer().port, flush=True)
    while True:
        time.sleep(60)
"#;

/// The virtualenv's Python, with app-net installed: made on first use (by `python3 -m venv` and
/// pip, from PyPI) and kept in `target/appnet-venv` for later runs.
pub fn venv_python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let venv = root().join("target").join("appnet-venv");
        let python = venv.join("bin").join("python");
        if installed_version(&python).as_deref() == Some(APPNET_VERSION) {
            return Ok(python);
        }
        let _ = std::fs::remove_dir_all(&venv);
        let steps: [(&str, Vec<String>); 2] = [
            (
                "python3",
                vec!["-m".into(), "venv".into(), venv.display().to_string()],
            ),
            (
                python.to_str().expect("a UTF-8 path"),
                vec![
                    "-m".into(),
                    "pip".into(),
                    "install".into(),
                    "--quiet".into(),
                    "--disable-pip-version-check".into(),
                    format!("app-net=={APPNET_VERSION}"),
                ],
            ),
        ];
        for (program, args) in steps {
            let out = std::process::Command::new(program)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {program}: {e} (make setup installs python3)"))?;
            if !out.status.success() {
                return Err(format!(
                    "{program} {} failed ({}):\n{}{}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        match installed_version(&python) {
            Some(v) if v == APPNET_VERSION => Ok(python),
            other => Err(format!(
                "pip installed app-net {other:?}, not {APPNET_VERSION}"
            )),
        }
    });
    match made {
        Ok(python) => python,
        Err(why) => {
            panic!("the app-net tests need app-net {APPNET_VERSION} in a virtualenv: {why}")
        }
    }
}

/// The app-net version installed for `python`, read from its metadata (importing `net` would
/// look up this machine's host name).
fn installed_version(python: &Path) -> Option<String> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('app-net'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A script and the launcher, written to a scratch directory of their own.
struct Script {
    dir: Scratch,
}

impl Script {
    fn new(source: &str) -> Script {
        let dir = Scratch::new("appnet");
        dir.file("launch.py", LAUNCHER.as_bytes());
        dir.file("script.py", source.as_bytes());
        Script { dir }
    }

    /// The interpreter's arguments: unbuffered, the launcher, `mode` (`serve` or `run`), the
    /// script.
    fn args(&self, mode: &str) -> [String; 4] {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        [
            "-u".into(),
            path("launch.py"),
            mode.into(),
            path("script.py"),
        ]
    }

    fn spec<'a>(
        &self,
        python: &'a str,
        args: &'a [&'a str],
        env: &'a [(&'a str, &'a str)],
    ) -> Spec<'a> {
        Spec {
            program: Some(python),
            ..Spec::netrun(args, env)
        }
    }

    /// Starts the script in `mode` with the virtualenv's Python.
    fn spawn(&self, ports: &Ports, mode: &str, env: &[(&str, &str)]) -> Process {
        let python = venv_python().to_str().expect("a UTF-8 path");
        let args = self.args(mode);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Process::spawn(ports, &self.spec(python, &args, env), Stdio::null())
    }
}

/// A Python app-net peer running a script, killed on drop.
pub struct PythonPeer {
    process: Process,
    port: u16,
    _script: Script,
}

impl PythonPeer {
    /// Runs `source` as an app-net peer in `ports` (with `env` on top) and waits for it to
    /// serve.
    pub fn start(ports: &Ports, source: &str, env: &[(&str, &str)]) -> PythonPeer {
        let script = Script::new(source);
        let mut process = script.spawn(ports, "serve", env);
        let ready = |p: &Process| {
            p.stdout.text().lines().find_map(|line| {
                line.strip_prefix("ready ")
                    .and_then(|port| port.trim().parse::<u16>().ok())
            })
        };
        wait_until(START_LIMIT, || {
            ready(&process).is_some() || process.exited().is_some()
        });
        let Some(port) = ready(&process) else {
            process.kill();
            panic!("the app-net peer did not start\n{}", process.report());
        };
        PythonPeer {
            process,
            port,
            _script: script,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its peer id, for a peer of `group` (app-net's ids are netrun's).
    pub fn id(&self, group: &str) -> String {
        Ports::id_of(self.port, group)
    }

    /// What it printed so far.
    pub fn report(&self) -> String {
        self.process.report()
    }

    /// The lines it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.process.stdout.text()
    }
}

/// Runs `source` with app-net in `ports` (with `env` on top), to completion.
pub fn python(ports: &Ports, source: &str, env: &[(&str, &str)]) -> CliOutput {
    let script = Script::new(source);
    let python = venv_python().to_str().expect("a UTF-8 path");
    let args = script.args("run");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_to_end(ports, &script.spec(python, &args, env))
}

/// Sends `pieces` to the peer at `port` on one connection, one write each with a pause between,
/// as an app-net client that speaks in several packets; returns everything the peer answered
/// until it closed.
pub fn raw_request(port: u16, pieces: &[&[u8]]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((crate::HOST, port))
        .unwrap_or_else(|e| panic!("cannot connect to {}:{port}: {e}", crate::HOST));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    for piece in pieces {
        stream.write_all(piece).expect("the request is written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("no whole answer from port {port}: {e}"));
    String::from_utf8(answer).expect("app-net answers are text")
}
