//! A lab for integration tests: network namespaces as containers, veths, xvsd processes.
//!
//! Every name is unique to the test process and test, so tests never collide with each other
//! or with anything else on the machine; the [`Lab`]'s `Drop` kills its daemons and removes its
//! namespaces and links even when the test panics. Traffic only flows between addresses inside
//! the lab's namespaces. Tests of one binary run one at a time (a process-wide lock): they
//! measure and time things on a 2-core machine.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the lab"
)]
#![allow(
    unreachable_pub,
    reason = "pub items of a module that each test binary includes"
)]

pub mod tcp;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xvs_proto::client::{Client, ClientError};
use xvs_testkit::{Link, Netns, VethPair, bin_path, exec_in, have, skip, spawn_in};
pub use xvs_testkit::{must, run};

/// A namespace standing in for a container, with one interface `eth0` wired to a host veth.
#[derive(Debug, Clone)]
pub struct Container {
    /// The namespace name.
    pub ns: String,
    /// The host end of its veth (the switch port).
    pub port: String,
    /// Its IPv4 address (without prefix length).
    pub ip: String,
}

impl Container {
    /// Runs a command in the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        exec_in(&self.ns, args)
    }

    /// Spawns a command in the namespace, its output piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        spawn_in(&self.ns, args)
    }

    /// Pings `ip` `count` times, `interval` seconds apart; returns how many replies came.
    pub fn ping(&self, ip: &str, count: u32, interval: f64) -> u32 {
        let out = self.exec(&[
            "ping",
            "-n",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            &interval.to_string(),
            "-W",
            "1",
            ip,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(',')
            .find(|part| part.contains("received"))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Pings until one reply comes or `timeout` passes; returns whether it came.
    pub fn wait_ping(&self, ip: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.ping(ip, 1, 0.2) == 1 {
                return true;
            }
        }
        false
    }

    /// A counter of `eth0` from sysfs (`tx_packets`, `rx_packets`, ...).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self.exec(&["cat", &format!("/sys/class/net/eth0/statistics/{name}")]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// The MAC of `eth0`.
    pub fn mac(&self) -> String {
        let out = self.exec(&["cat", "/sys/class/net/eth0/address"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// A running xvsd.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its command socket.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// A client connected to it.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to xvsd")
    }

    /// Calls a method, panicking on error. Tests read the answer as JSON, as any client of
    /// the socket would, so that they notice when the wire changes.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.client()
            .call_raw(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// Calls a method, returning the error.
    pub fn try_call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.client().call_raw(method, params)
    }

    /// Runs xvsctl against it.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin_path("xvsctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run xvsctl")
    }

    /// The port counters, by port name: (rx_packets, tx_packets).
    pub fn port_counters(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let r = self.call("dump-ports", json!({}));
        r["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    (
                        p["rx_packets"].as_u64().unwrap(),
                        p["tx_packets"].as_u64().unwrap(),
                    ),
                )
            })
            .collect()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Kills it with SIGKILL (no cleanup at all) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGUSR2 (a handover) and waits up to 10 s for it to exit; returns its exit
    /// status success.
    pub fn hand_over(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-USR2", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Stops it with SIGTERM and waits; returns its exit status success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The test's namespaces, links and daemons, all removed on drop.
#[derive(Debug)]
pub struct Lab {
    /// The unique prefix of every name in this lab.
    pub prefix: String,
    test: String,
    dir: PathBuf,
    daemons_started: u32,
    /// The sockets daemons were started on: the n-th gets the n-th upcall device name.
    sockets: Vec<PathBuf>,
    children: Vec<Child>,
    /// Links the tools under test made.
    links: Vec<Link>,
    veths: Vec<VethPair>,
    namespaces: Vec<Netns>,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// A new lab, or `None` (with the reason printed) where the tests cannot run.
    pub fn new(test: &str) -> Option<Lab> {
        if !xvs_testkit::can_run(test, &["ip", "ping"]) {
            return None;
        }
        if !xvs_sys::xsk::af_xdp_available() {
            skip(test, "this kernel has no AF_XDP sockets");
            return None;
        }
        let serial = xvs_testkit::serial();
        let prefix = xvs_testkit::unique_name("x");
        let dir = std::env::temp_dir().join(format!("xvs-test-{prefix}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Some(Lab {
            prefix,
            test: test.to_owned(),
            dir,
            daemons_started: 0,
            sockets: Vec::new(),
            children: Vec::new(),
            links: Vec::new(),
            veths: Vec::new(),
            namespaces: Vec::new(),
            _serial: serial,
        })
    }

    /// Whether a tool is installed; prints a skip note if not.
    pub fn require(&self, tool: &str) -> bool {
        let ok = have(tool);
        if !ok {
            skip(
                &format!("{} (in part)", self.test),
                format_args!("{tool} is not installed"),
            );
        }
        ok
    }

    /// A namespace `{prefix}n{i}` with `eth0` at `10.{net}.0.{i}/24`, wired to host veth
    /// `{prefix}h{i}`. Offloads are left at their defaults, as `ip link add` sets them. IPv6 is
    /// off in the namespace so that no stray packets disturb counters.
    pub fn container(&mut self, i: u8, net: u8) -> Container {
        self.container_with_queues(i, net, 1)
    }

    /// As [`container`](Self::container), with a veth of `queues` RX and TX queues on both
    /// ends.
    pub fn container_with_queues(&mut self, i: u8, net: u8, queues: u32) -> Container {
        let ns = Netns::new(format!("{}n{i}", self.prefix)).expect("make the namespace");
        let port = format!("{}h{i}", self.prefix);
        let veth = VethPair::build(&port, "eth0")
            .peer_netns(&ns)
            .queues(queues)
            .create()
            .expect("make the veth");
        xvs_testkit::sysctl(&format!("net.ipv6.conf.{port}.disable_ipv6=1"))
            .expect("IPv6 off on the port");
        for key in ["all", "default", "eth0"] {
            let _ = ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"));
        }
        let c = Container {
            ns: ns.name().to_owned(),
            port: port.clone(),
            ip: format!("10.{net}.0.{i}"),
        };
        assert!(
            c.exec(&["ip", "addr", "add", &format!("{}/24", c.ip), "dev", "eth0"])
                .status
                .success()
        );
        assert!(
            c.exec(&["ip", "link", "set", "eth0", "up"])
                .status
                .success()
        );
        assert!(c.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        // As xvsctl attach and the CNI plugin do: with GRO on its end of the veth, the
        // container can take frames the switch's fast path redirects in the kernel.
        c.exec(&["ethtool", "-K", "eth0", "gro", "on"]);
        must(&["ip", "link", "set", &port, "up"]);
        self.namespaces.push(ns);
        self.veths.push(veth);
        c
    }

    /// A namespace `{prefix}b{i}` with nothing in it but `lo` (down), for tools that wire
    /// containers themselves (`xvsctl attach`, xvs-cni, the Docker plugin). `port` is empty
    /// and `ip` is the given address, to be set by the tool. IPv6 is off, as in
    /// [`Lab::container`].
    pub fn bare_container(&mut self, i: u8, ip: &str) -> Container {
        let ns = Netns::new(format!("{}b{i}", self.prefix)).expect("make the namespace");
        for key in ["all", "default"] {
            let _ = ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"));
        }
        let c = Container {
            ns: ns.name().to_owned(),
            port: String::new(),
            ip: ip.to_owned(),
        };
        self.namespaces.push(ns);
        c
    }

    /// Deletes a host link on drop (one a tool under test made), unless it is gone by then.
    pub fn track_link(&mut self, name: &str) {
        let owned = self.links.iter().any(|l| l.name() == name)
            || self.veths.iter().any(|v| v.name() == name);
        if !owned {
            self.links.push(Link::adopt(name));
        }
    }

    /// A path in the lab's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts xvsd with these ports and extra arguments, waiting until it answers.
    pub fn xvsd(&mut self, ports: &[&str], extra: &[&str]) -> Daemon {
        let socket = self.path("xvsd.ctl");
        self.xvsd_at(&socket, ports, extra)
    }

    /// Starts xvsd on a given socket path.
    pub fn xvsd_at(&mut self, socket: &Path, ports: &[&str], extra: &[&str]) -> Daemon {
        self.xvsd_with_env(socket, ports, extra, &[])
    }

    /// Starts xvsd on a given socket path with more environment variables (as a service
    /// manager sets `NOTIFY_SOCKET`), waiting until it answers.
    pub fn xvsd_with_env(
        &mut self,
        socket: &Path,
        ports: &[&str],
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Daemon {
        self.daemons_started += 1;
        let log = self.path(&format!("xvsd-{}.log", self.daemons_started));
        let mut cmd = Command::new(bin_path("xvsd"));
        cmd.arg("--socket").arg(socket);
        for p in ports {
            cmd.args(["--port", p]);
        }
        cmd.args(extra);
        // A daemon's upcall device and state directory are named after the lab and the
        // socket (a restart on the same socket finds its predecessor's), and removed with the
        // lab even after SIGKILL.
        let n = match self.sockets.iter().position(|s| s == socket) {
            Some(n) => n,
            None => {
                self.sockets.push(socket.to_owned());
                let n = self.sockets.len() - 1;
                self.links
                    .push(Link::adopt(&format!("{}u{n}", self.prefix)));
                n
            }
        };
        if !extra.contains(&"--upcall-dev") {
            cmd.args(["--upcall-dev", &format!("{}u{n}", self.prefix)]);
        }
        if !extra.contains(&"--state-dir") {
            cmd.arg("--state-dir").arg(self.state_dir(socket));
        }
        // XVS_TEST_HOOK=tc|xdp runs the whole suite with every port on that hook.
        if let Ok(hook) = std::env::var("XVS_TEST_HOOK")
            && !extra.contains(&"--hook")
        {
            cmd.args(["--hook", &hook]);
        }
        // XVS_TEST_FAST_PATH=off runs the whole suite with the in-kernel fast path off.
        if std::env::var("XVS_TEST_FAST_PATH").is_ok_and(|v| v == "off")
            && !extra.contains(&"--fast-path")
        {
            cmd.args(["--fast-path", "off"]);
        }
        let log_file = std::fs::File::create(&log).expect("log file");
        cmd.stdout(Stdio::null())
            .stderr(log_file.try_clone().unwrap())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let child = cmd.spawn().expect("spawn xvsd");
        let mut daemon = Daemon {
            child: Some(child),
            socket: socket.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut c) = Client::connect(socket)
                && c.call_raw("version", json!({})).is_ok()
            {
                return daemon;
            }
            if !daemon.is_running() {
                panic!("xvsd exited at start:\n{}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "xvsd did not start:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The state directory of the daemons on `socket` (one per socket, kept across restarts
    /// on it).
    pub fn state_dir(&self, socket: &Path) -> PathBuf {
        let n = self
            .sockets
            .iter()
            .position(|s| s == socket)
            .unwrap_or(self.sockets.len());
        self.dir.join(format!("state{n}"))
    }

    /// Keeps a child process to kill on drop.
    pub fn keep(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Deletes a host link now (as an operator or a crashing container would).
    pub fn delete_link(&mut self, name: &str) {
        let deleted = if let Some(i) = self.veths.iter().position(|v| v.name() == name) {
            self.veths.remove(i).delete()
        } else if let Some(i) = self.links.iter().position(|l| l.name() == name) {
            self.links.remove(i).delete()
        } else {
            Link::adopt(name).delete()
        };
        deleted.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Whether a link of this name exists in the host namespace.
pub fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", "dev", name]).status.success()
}

/// Whether any interface of the host still has an XDP program attached by name prefix.
pub fn xdp_attached(link: &str) -> bool {
    let out = run(&["ip", "-d", "link", "show", "dev", link]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The guards' own drops, in this order: links, then the namespaces they lead into.
        self.links.clear();
        self.veths.clear();
        self.namespaces.clear();
        // Links a failed test left pinned for a handover.
        for socket in &self.sockets {
            let _ = std::fs::remove_dir_all(control::store::handover_dir(&self.state_dir(socket)));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs iperf3 TCP from `client` to `server` for `secs` seconds with `streams` parallel
/// streams; returns iperf3's JSON report (checked to hold no error).
pub fn iperf_json(
    lab: &mut Lab,
    client: &Container,
    server: &Container,
    secs: u32,
    streams: u32,
) -> Value {
    let srv = server.spawn(&["iperf3", "-s", "-1", "-B", &server.ip]);
    lab.keep(srv);
    std::thread::sleep(Duration::from_millis(500));
    let out = client.exec(&[
        "iperf3",
        "-c",
        &server.ip,
        "-t",
        &secs.to_string(),
        "-P",
        &streams.to_string(),
        "-J",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("iperf3 output is not JSON ({e}): {text}"));
    assert!(v.get("error").is_none(), "iperf3 failed: {}", v["error"]);
    v
}

/// Runs iperf3 TCP from `client` to `server` for `secs` seconds; returns Gbit/s received.
pub fn iperf_tcp(lab: &mut Lab, client: &Container, server: &Container, secs: u32) -> f64 {
    iperf_json(lab, client, server, secs, 1)["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("iperf3 reports a rate")
        / 1e9
}
