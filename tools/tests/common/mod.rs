//! Shared by the integration tests: a veth pair between two namespaces of our own, removed
//! in `Drop` even when a test panics, and the xvs-pktgen binary run inside them.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The binary under test.
pub(crate) const PKTGEN: &str = env!("CARGO_BIN_EXE_xvs-pktgen");

/// The MAC address of side A's veth.
pub(crate) const MAC_A: &str = "02:00:5e:00:00:0a";
/// The MAC address of side B's veth.
pub(crate) const MAC_B: &str = "02:00:5e:00:00:0b";

/// Tests that move packets run one at a time: on two cores, a generator and a counter of
/// another test would take the CPU the one being measured needs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether this test can make namespaces and load XDP programs; says why not if it cannot.
pub(crate) fn can_run(test: &str) -> bool {
    if let Err(e) = xvs_tools::host::check_privileges() {
        eprintln!("skipping {test}: {e}");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipping {test}: the `ip` command (iproute2) is missing");
        return false;
    }
    true
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two namespaces joined by a veth pair, both ends up. Dropping it deletes the namespaces
/// (and with them the veths and anything attached).
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
    _serial: MutexGuard<'static, ()>,
}

impl VethPair {
    /// Makes a uniquely named pair (the names carry the process id and a counter).
    pub(crate) fn new() -> VethPair {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = format!(
            "xpg{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let pair = VethPair {
            ns_a: format!("{id}a"),
            ns_b: format!("{id}b"),
            dev_a: format!("{id}a"),
            dev_b: format!("{id}b"),
            _serial: serial,
        };
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &pair.ns_a]);
        ip(&["netns", "add", &pair.ns_b]);
        ip(&[
            "link",
            "add",
            &pair.dev_a,
            "netns",
            &pair.ns_a,
            "address",
            MAC_A,
            "type",
            "veth",
            "peer",
            "name",
            &pair.dev_b,
            "netns",
            &pair.ns_b,
            "address",
            MAC_B,
        ]);
        ip(&["-n", &pair.ns_a, "link", "set", &pair.dev_a, "up"]);
        ip(&["-n", &pair.ns_b, "link", "set", &pair.dev_b, "up"]);
        pair
    }

    /// Runs xvs-pktgen in namespace `ns` to the end.
    pub(crate) fn pktgen(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, PKTGEN])
            .args(args)
            .output()
            .expect("run xvs-pktgen")
    }

    /// Starts xvs-pktgen in namespace `ns` and waits until it prints a line containing
    /// `ready` on stderr.
    ///
    /// # Panics
    /// If it exits before.
    pub(crate) fn spawn_until(&self, ns: &str, args: &[&str], ready: &str) -> Running {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, PKTGEN])
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
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
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
