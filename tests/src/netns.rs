//! Test networks of hosts made of network namespaces: each subnet is a bridge (in a namespace
//! of its own), each host a namespace with one interface on a subnet, and a router namespace
//! joins subnets. Processes run on a host with [`crate::TestPeer::start_on`] and
//! [`crate::netrun_on`].
//!
//! Everything a [`TestNet`] creates (namespaces, and with them their links and bridges, and
//! per-host files under `/etc/netns`) is removed when it is dropped, also when the test fails;
//! what a killed test process left behind is removed by the next one. Declare the `TestNet`
//! before the test's peers, so that they are stopped before their hosts go.
//!
//! Network rule: no host is linked to this machine's own interfaces, so nothing a test sends
//! (multicast included) leaves the namespaces it made. Needs root and iproute2 (`ip`): without
//! them [`TestNet::new`] fails the test, saying what is missing.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// What every namespace of the tests' networks is named after.
const PREFIX: &str = "nrt";

/// A test network: its subnets, hosts and router, removed when dropped.
pub struct TestNet {
    /// `nrt<pid>x<n>`: unique on this machine while this process lives.
    name: String,
    namespaces: Vec<String>,
    hosts_files: Vec<PathBuf>,
    subnets: u8,
    router: Option<String>,
}

/// A subnet: `10.77.<index>.0/24`, a bridge in a namespace of its own.
pub struct Subnet {
    pub index: u8,
    switch: String,
    hosts: u8,
}

/// A host: a network namespace with `eth0` at `address` on one subnet.
#[derive(Debug, Clone)]
pub struct Host {
    pub namespace: String,
    pub address: Ipv4Addr,
    /// The subnet's switch namespace and this host's port on it (to cut its link).
    switch: String,
    port: String,
}

impl TestNet {
    /// An empty test network. Fails the test when this process is not root or `ip` is missing.
    pub fn new() -> TestNet {
        // SAFETY: geteuid(2) has no side effects.
        let uid = unsafe { libc::geteuid() };
        assert!(
            uid == 0,
            "this test builds a network of namespaces and needs root (running as uid {uid}): run it as root, as CI does"
        );
        let ip = Command::new("ip").arg("-V").output();
        assert!(
            ip.is_ok_and(|out| out.status.success()),
            "this test needs iproute2's `ip` (`make setup` installs it)"
        );
        remove_leftovers();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        TestNet {
            name,
            namespaces: Vec::new(),
            hosts_files: Vec::new(),
            subnets: 0,
            router: None,
        }
    }

    /// A new namespace of this network, with loopback up.
    fn namespace(&mut self, role: &str) -> String {
        let ns = format!("{}-{role}", self.name);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A new subnet, `10.77.<n>.0/24`.
    pub fn subnet(&mut self) -> Subnet {
        self.subnets += 1;
        let index = self.subnets;
        let switch = self.namespace(&format!("s{index}"));
        in_ns(&switch, &["ip", "link", "add", "br0", "type", "bridge"]);
        in_ns(&switch, &["ip", "link", "set", "br0", "up"]);
        Subnet {
            index,
            switch,
            hosts: 0,
        }
    }

    /// A new host on `subnet`, at `10.77.<subnet>.<n>`, its default route through the router's
    /// leg on that subnet (`.254`) once there is a router.
    pub fn host(&mut self, subnet: &mut Subnet) -> Host {
        subnet.hosts += 1;
        let number = subnet.hosts;
        let namespace = self.namespace(&format!("h{}-{number}", subnet.index));
        let port = format!("p{number}");
        plug(&namespace, "eth0", &subnet.switch, &port);
        let address = Ipv4Addr::new(10, 77, subnet.index, number);
        in_ns(
            &namespace,
            &["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"],
        );
        in_ns(&namespace, &["ip", "link", "set", "eth0", "up"]);
        let gateway = format!("10.77.{}.254", subnet.index);
        in_ns(
            &namespace,
            &["ip", "route", "add", "default", "via", &gateway],
        );
        Host {
            namespace,
            address,
            switch: subnet.switch.clone(),
            port,
        }
    }

    /// A router with a leg (`.254`) on each of `subnets`, forwarding between them.
    pub fn route(&mut self, subnets: &[&Subnet]) {
        let router = self.namespace("r");
        in_ns(&router, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        for subnet in subnets {
            let leg = format!("r{}", subnet.index);
            let port = format!("up{}", subnet.index);
            plug(&router, &leg, &subnet.switch, &port);
            let address = format!("10.77.{}.254/24", subnet.index);
            in_ns(&router, &["ip", "addr", "add", &address, "dev", &leg]);
            in_ns(&router, &["ip", "link", "set", &leg, "up"]);
        }
        self.router = Some(router);
    }

    /// Gives `host` its own `/etc/hosts` (`ip netns exec` shows `/etc/netns/NS/hosts` there).
    pub fn hosts_file(&mut self, host: &Host, text: &str) {
        let dir = PathBuf::from("/etc/netns").join(&host.namespace);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let file = dir.join("hosts");
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("cannot write {file:?}: {e}"));
        self.hosts_files.push(dir);
    }

    /// Cuts `host` off its subnet (its port on the bridge goes down), or joins it again.
    pub fn set_link(&self, host: &Host, up: bool) {
        let state = if up { "up" } else { "down" };
        in_ns(&host.switch, &["ip", "link", "set", &host.port, state]);
    }

    /// Bytes `host` has sent on its interface so far.
    pub fn sent_bytes(&self, host: &Host) -> u64 {
        let out = in_ns(
            &host.namespace,
            &["cat", "/sys/class/net/eth0/statistics/tx_bytes"],
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a byte count: {out:?}"))
    }
}

impl Default for TestNet {
    fn default() -> Self {
        TestNet::new()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for dir in &self.hosts_files {
            let _ = std::fs::remove_dir_all(dir);
        }
        for ns in self.namespaces.iter().rev() {
            kill_everything_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Links `namespace` to a subnet's switch: a pair of interfaces, `name` in the namespace and
/// `port` on the switch's bridge, the port up.
fn plug(namespace: &str, name: &str, switch: &str, port: &str) {
    ip(&[
        "link", "add", name, "netns", namespace, "type", "veth", "peer", "name", port, "netns",
        switch,
    ]);
    in_ns(switch, &["ip", "link", "set", port, "master", "br0"]);
    in_ns(switch, &["ip", "link", "set", port, "up"]);
}

/// Runs `ip ARGS…`; a failure fails the test with what `ip` said.
fn ip(args: &[&str]) -> String {
    run("ip", args)
}

/// Runs `COMMAND…` in the namespace `ns`.
fn in_ns(ns: &str, command: &[&str]) -> String {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(command);
    run("ip", &args)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills whatever still runs in `ns` (a test's peers are killed when dropped; this catches
/// what escaped).
fn kill_everything_in(ns: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: kill(2) with SIGKILL on a process in a namespace this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes the namespaces (and `/etc/netns` files) of test processes that no longer run.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = ns
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('x').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_everything_in(ns);
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
    }
}
