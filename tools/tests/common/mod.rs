//! Shared by the integration tests: a veth pair between two namespaces of our own, removed
//! in `Drop` even when a test panics, and the xvs-pktgen binary run inside them.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::MutexGuard;
use std::thread::JoinHandle;
use std::time::Duration;

use xvs_testkit::{Netns, netns_command, skip, unique_name};

/// The binary under test.
pub(crate) fn pktgen() -> PathBuf {
    xvs_testkit::bin_path("xvs-pktgen")
}

/// The MAC address of side A's veth.
pub(crate) const MAC_A: &str = "02:00:5e:00:00:0a";
/// The MAC address of side B's veth.
pub(crate) const MAC_B: &str = "02:00:5e:00:00:0b";
/// Side A's IPv4 address, in a pair made by [`VethPair::new_ipv4`].
pub(crate) const IP_A: &str = "198.18.7.1";
/// Side B's IPv4 address, in a pair made by [`VethPair::new_ipv4`].
pub(crate) const IP_B: &str = "198.18.7.2";

/// Whether this test can make namespaces and load XDP programs; says why not if it cannot.
pub(crate) fn can_run(test: &str) -> bool {
    if !xvs_testkit::can_run(test, &["ip"]) {
        return false;
    }
    if let Err(e) = xvs_tools::host::check_privileges() {
        skip(test, e);
        return false;
    }
    true
}

/// Two namespaces joined by a veth pair, both ends up. Dropping it deletes the veths, then
/// the namespaces (and with them anything attached).
///
/// Tests that move packets run one at a time (it holds [`xvs_testkit::serial`]): on two
/// cores, a generator and a counter of another test would take the CPU the one being
/// measured needs.
#[derive(Debug)]
pub(crate) struct VethPair {
    /// Namespace of side A.
    pub(crate) ns_a: String,
    /// Namespace of side B.
    pub(crate) ns_b: String,
    /// Side A's veth.
    pub(crate) dev_a: String,
    /// Side B's veth.
    pub(crate) dev_b: String,
    // Dropped in this order: the pair, the namespaces, then the lock.
    _veth: xvs_testkit::VethPair,
    _namespaces: [Netns; 2],
    _serial: MutexGuard<'static, ()>,
}

impl VethPair {
    /// Makes a uniquely named pair (the names carry the process id and a counter).
    pub(crate) fn new() -> VethPair {
        VethPair::make(false)
    }

    /// A pair that speaks IPv4 alone: IPv6 off in both namespaces before the links come up
    /// (no neighbor discovery lands in a count), side A at [`IP_A`], side B at [`IP_B`], and
    /// each side knowing the other's MAC address for good (a counter that drops everything
    /// drops ARP too).
    pub(crate) fn new_ipv4() -> VethPair {
        VethPair::make(true)
    }

    fn make(ipv4: bool) -> VethPair {
        let serial = xvs_testkit::serial();
        let id = unique_name("xpg");
        let (dev_a, dev_b) = (format!("{id}a"), format!("{id}b"));
        let ns_a = Netns::new(format!("{id}a")).expect("make namespace A");
        let ns_b = Netns::new(format!("{id}b")).expect("make namespace B");
        let veth = xvs_testkit::VethPair::build(&dev_a, &dev_b)
            .netns(&ns_a)
            .address(MAC_A)
            .peer_netns(&ns_b)
            .peer_address(MAC_B)
            .create()
            .expect("make the veth pair");
        if ipv4 {
            for ns in [&ns_a, &ns_b] {
                for key in ["all", "default"] {
                    ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"))
                        .expect("turn IPv6 off");
                }
            }
        }
        veth.set_up().expect("bring the veths up");
        if ipv4 {
            for (ns, dev, ip, peer_ip, peer_mac) in [
                (&ns_a, &dev_a, IP_A, IP_B, MAC_B),
                (&ns_b, &dev_b, IP_B, IP_A, MAC_A),
            ] {
                let ns = ns.name();
                xvs_testkit::must(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    dev,
                ]);
                xvs_testkit::must(&[
                    "ip",
                    "-n",
                    ns,
                    "neigh",
                    "replace",
                    peer_ip,
                    "lladdr",
                    peer_mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ]);
            }
        }
        VethPair {
            ns_a: ns_a.name().to_owned(),
            ns_b: ns_b.name().to_owned(),
            dev_a,
            dev_b,
            _veth: veth,
            _namespaces: [ns_a, ns_b],
            _serial: serial,
        }
    }

    /// Runs xvs-pktgen in namespace `ns` to the end.
    pub(crate) fn pktgen(&self, ns: &str, args: &[&str]) -> Output {
        pktgen_in(ns, args)
    }

    /// Starts xvs-pktgen in namespace `ns`; see [`spawn_pktgen_until`].
    pub(crate) fn spawn_until(&self, ns: &str, args: &[&str], ready: &str) -> Running {
        spawn_pktgen_until(ns, args, ready)
    }
}

/// Runs xvs-pktgen in namespace `ns` to the end.
pub(crate) fn pktgen_in(ns: &str, args: &[&str]) -> Output {
    netns_command(ns, pktgen())
        .args(args)
        .output()
        .expect("run xvs-pktgen")
}

/// Starts xvs-pktgen in namespace `ns` and waits until it prints a line containing `ready`
/// on stderr.
///
/// # Panics
/// If it exits before.
pub(crate) fn spawn_pktgen_until(ns: &str, args: &[&str], ready: &str) -> Running {
    let mut child = netns_command(ns, pktgen())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xvs-pktgen");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("read stderr") == 0 {
            let _ = child.wait();
            panic!("xvs-pktgen {args:?} ended before {ready:?}:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains(ready) {
            break;
        }
    }
    // Keep draining stderr, so that progress lines never fill the pipe.
    let drain = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        seen + &rest
    });
    Running {
        child: Some(child),
        stderr: Some(drain),
    }
}

/// A running xvs-pktgen; killed in `Drop` if still running.
#[derive(Debug)]
pub(crate) struct Running {
    child: Option<Child>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished xvs-pktgen left.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Whether it exited with status 0.
    pub(crate) success: bool,
    /// Its standard output.
    pub(crate) stdout: String,
    /// Its standard error.
    pub(crate) stderr: String,
}

impl Running {
    /// Sends SIGINT (as Ctrl-C does) to the process inside `ip netns exec` (which `exec`s it,
    /// so the pid is the tool's own).
    pub(crate) fn interrupt(&self) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to end (at most `limit`), and collects what it printed.
    pub(crate) fn finish(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("xvs-pktgen did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut stdout)
            .expect("read stdout");
        let stderr = self
            .stderr
            .take()
            .expect("drain")
            .join()
            .expect("drain thread");
        Finished {
            success: status.success(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The JSON summary a run printed on stdout.
pub(crate) fn summary(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A count field of a summary.
pub(crate) fn count(summary: &serde_json::Value, path: &str) -> u64 {
    summary
        .pointer(path)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {path} in {summary}"))
}
