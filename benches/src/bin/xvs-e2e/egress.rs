//! The egress scenario: TCP from a container through the switch to an "outside" namespace,
//! masqueraded by the host's kernel, as a container reaches the internet.
//!
//! ```text
//!   {id}-ec netns           {id}-eh netns (the "host")                        {id}-eo netns
//!   eth0 198.18.100.2 ── switch ── gateway 198.18.100.1, forwarding, masquerade ── up0 198.19.100.1 ── eth0 198.19.100.2
//! ```
//!
//! The outside has no route back to the container's subnet: only the host's NAT can answer.
//! The switch is set up inside the host namespace (its forwarding setting and its nftables
//! are the lab's, never the machine's):
//!
//! - xvs: xvsd with an internal port `gw` (`--ip 198.18.100.1/24 --masquerade`: the host
//!   side addressed, the daemon's own nftables table masquerading the subnet) and the
//!   container wired by `xvsctl attach --ip --gw`;
//! - the Linux bridge: `br0` holding the gateway address, a veth to the container (GRO on at
//!   its `eth0`, as attach does), an nftables masquerade rule for the subnet as xvsd writes
//!   it, and `net.ipv4.ip_forward=1`.
//!
//! Everything lives in the three namespaces, whose names carry the bench's process id:
//! dropping an [`Egress`] stops xvsd (which removes its port and table) and deletes them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xvs_testkit::{Netns, netns_command, unique_name};

use crate::proc::{Proc, in_ns, output, run, sleep};
use crate::switch::{Env, Kind};

/// The container's address.
pub(crate) const CONTAINER_IP: &str = "198.18.100.2";
/// The gateway: the internal port's or the bridge's address.
pub(crate) const GATEWAY_IP: &str = "198.18.100.1";
/// The container's subnet.
const SUBNET: &str = "198.18.100.0/24";
/// The host's address towards the outside.
const UPLINK_IP: &str = "198.19.100.1";
/// The outside's address.
pub(crate) const OUTSIDE_IP: &str = "198.19.100.2";

/// The kinds the scenario measures (the others have no NAT of their own to compare).
pub(crate) fn measures(kind: Kind) -> bool {
    kind.is_xvs() || kind == Kind::Bridge
}

/// xvsd in the host namespace.
#[derive(Debug)]
struct Daemon {
    proc: Proc,
    xvsctl: PathBuf,
    socket: PathBuf,
    /// The container's port.
    port: String,
}

/// The scenario's namespaces and switch; removed on drop.
#[derive(Debug)]
pub(crate) struct Egress {
    /// The unique prefix of every name.
    pub(crate) id: String,
    /// The host namespace (the switch, forwarding and NAT).
    pub(crate) host_ns: String,
    /// The container's namespace (the iperf3 client).
    pub(crate) container_ns: String,
    /// The outside namespace (the iperf3 server).
    pub(crate) outside_ns: String,
    daemon: Option<Daemon>,
    setup: Value,
    namespaces: Vec<Netns>,
}

fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut c = netns_command(ns, "ip");
    c.args(args);
    run(c)
}

fn in_host(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut c = netns_command(ns, program);
    c.args(args);
    run(c)
}

impl Egress {
    /// Makes the namespaces, the uplink and the switch `kind` (xvs or the bridge), and waits
    /// until the container reaches the outside through the masquerade.
    ///
    /// # Errors
    /// A setup step failed or no ping crossed within 10 s; whatever was made is removed.
    pub(crate) fn create(kind: Kind, env: &Env<'_>) -> anyhow::Result<Egress> {
        let id = unique_name("xg");
        let mut lab = Egress {
            host_ns: format!("{id}-eh"),
            container_ns: format!("{id}-ec"),
            outside_ns: format!("{id}-eo"),
            id,
            daemon: None,
            setup: Value::Null,
            namespaces: Vec::new(),
        };
        for ns in [&lab.host_ns, &lab.container_ns, &lab.outside_ns] {
            let netns = Netns::new(ns.clone())?;
            for key in ["all", "default"] {
                netns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"))?;
            }
            lab.namespaces.push(netns);
            ip_in(ns, &["link", "set", "lo", "up"])?;
        }
        let (host, ctr, out) = (
            lab.host_ns.clone(),
            lab.container_ns.clone(),
            lab.outside_ns.clone(),
        );
        // The uplink: host `up0` ── outside `eth0`; no route back to the subnet outside.
        ip_in(
            &host,
            &[
                "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &out,
            ],
        )?;
        ip_in(
            &host,
            &["addr", "add", &format!("{UPLINK_IP}/24"), "dev", "up0"],
        )?;
        ip_in(&host, &["link", "set", "up0", "up"])?;
        ip_in(
            &out,
            &["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"],
        )?;
        ip_in(&out, &["link", "set", "eth0", "up"])?;
        if kind == Kind::Bridge {
            lab.bridge(&host, &ctr, env)?;
        } else if kind.is_xvs() {
            lab.xvs(kind, &host, &ctr, env)?;
        } else {
            bail!("the egress scenario has no setup for {}", kind.name());
        }
        lab.wait_connected(10)?;
        Ok(lab)
    }

    /// The Linux bridge with the gateway address, a masquerade rule, forwarding on.
    fn bridge(&mut self, host: &str, ctr: &str, env: &Env<'_>) -> anyhow::Result<()> {
        ip_in(host, &["link", "add", "br0", "type", "bridge"])?;
        ip_in(
            host,
            &["addr", "add", &format!("{GATEWAY_IP}/24"), "dev", "br0"],
        )?;
        ip_in(
            host,
            &[
                "link", "add", "c0", "type", "veth", "peer", "name", "eth0", "netns", ctr,
            ],
        )?;
        ip_in(host, &["link", "set", "c0", "master", "br0"])?;
        ip_in(host, &["link", "set", "c0", "up"])?;
        ip_in(host, &["link", "set", "br0", "up"])?;
        ip_in(
            ctr,
            &["addr", "add", &format!("{CONTAINER_IP}/24"), "dev", "eth0"],
        )?;
        ip_in(ctr, &["link", "set", "eth0", "up"])?;
        ip_in(ctr, &["route", "add", "default", "via", GATEWAY_IP])?;
        // As `xvsctl attach` does for the containers it wires.
        in_host(ctr, "ethtool", &["-K", "eth0", "gro", "on"])?;
        in_host(host, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        // The rule xvsd writes for an internal port with --masquerade.
        let rules = format!(
            "table ip xvs_e2e_egress {{\n    chain postrouting {{\n        type nat hook \
             postrouting priority srcnat; policy accept;\n        ip saddr {SUBNET} oifname != \
             \"br0\" masquerade\n    }}\n}}\n"
        );
        let file = env.dir.join(format!("{}-nat.nft", self.id));
        std::fs::write(&file, &rules).context("writing the nftables rules")?;
        let mut c = netns_command(host, "nft");
        c.arg("-f").arg(&file);
        run(c)?;
        self.setup = json!({ "switch": "bridge", "bridge": "br0", "nft": rules,
                             "ip_forward": 1, "gro_on_container_eth0": true });
        Ok(())
    }

    /// xvsd in the host namespace, an internal port with --masquerade, the container
    /// attached.
    fn xvs(&mut self, kind: Kind, host: &str, ctr: &str, env: &Env<'_>) -> anyhow::Result<()> {
        let socket = env.dir.join(format!("{}-xvsd.ctl", self.id));
        let state = env.dir.join(format!("{}-state", self.id));
        let mut args: Vec<String> = vec![
            "--socket".into(),
            socket.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--cpus".into(),
            env.switch_cpu.to_string(),
        ];
        if let Some(hook) = kind.xvs_hook() {
            args.extend(["--hook".to_owned(), hook.to_owned()]);
        }
        args.extend(env.xvsd_args.iter().cloned());
        let mut cmd = in_ns(Some(host), Some(env.gen_cpu), &env.bins.xvsd);
        cmd.args(&args);
        let proc = Proc::spawn("xvsd-egress", cmd, env.dir)?;
        self.daemon = Some(Daemon {
            proc,
            xvsctl: env.bins.xvsctl.clone(),
            socket,
            port: String::new(),
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        let show = loop {
            self.check()?;
            if let Ok(show) = self.ctl(&["show"]) {
                break show;
            }
            if Instant::now() > deadline {
                bail!("xvsd did not answer within 15 s");
            }
            sleep(Duration::from_millis(100))?;
        };
        let gw = format!("{GATEWAY_IP}/24");
        self.ctl(&[
            "add-port",
            "gw",
            "--type",
            "internal",
            "--ip",
            &gw,
            "--masquerade",
        ])?;
        let ctr_ip = format!("{CONTAINER_IP}/24");
        let attached = self.ctl(&["attach", ctr, "--ip", &ctr_ip, "--gw", GATEWAY_IP])?;
        let port = attached["port"]
            .as_str()
            .with_context(|| format!("attach named no port: {attached}"))?
            .to_owned();
        if let Some(d) = &mut self.daemon {
            d.port = port;
        }
        let nft = in_host(host, "nft", &["list", "ruleset"]).unwrap_or_default();
        self.setup = json!({ "switch": kind.name(), "xvsd_args": args, "show": show,
                             "attach": attached, "nft": nft });
        Ok(())
    }

    /// Runs `xvsctl --json ARGS` in the host namespace (attach makes its veth there).
    fn ctl(&self, args: &[&str]) -> anyhow::Result<Value> {
        let d = self.daemon.as_ref().context("no xvsd")?;
        let mut c: Command = netns_command(&self.host_ns, &d.xvsctl);
        c.arg("--socket").arg(&d.socket).arg("--json").args(args);
        let out = output(c)?;
        if !out.status.success() {
            bail!(
                "xvsctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("parsing xvsctl's JSON")
    }

    /// Fails if xvsd (when there is one) is no longer running.
    pub(crate) fn check(&mut self) -> anyhow::Result<()> {
        if let Some(d) = &mut self.daemon
            && !d.proc.is_running()
        {
            bail!("xvsd exited: {}", d.proc.stderr_tail());
        }
        Ok(())
    }

    /// The setup, for the report.
    pub(crate) fn setup(&self) -> &Value {
        &self.setup
    }

    /// The container's port counters (xvs only): `dump-ports` of its port.
    pub(crate) fn port_counters(&self) -> Option<Value> {
        let d = self.daemon.as_ref()?;
        self.ctl(&["dump-ports", &d.port])
            .ok()
            .map(|v| v["ports"][0].clone())
    }

    /// Facts about the host side's offloads, for a look at why a figure is what it is.
    pub(crate) fn host_offloads(&self) -> Value {
        let dev = if self.daemon.is_some() { "gw" } else { "br0" };
        let k = |dev: &str| in_host(&self.host_ns, "ethtool", &["-k", dev]).unwrap_or_default();
        let pick = |text: String| -> Value {
            text.lines()
                .filter(|l| {
                    [
                        "generic-receive-offload:",
                        "tcp-segmentation-offload:",
                        "generic-segmentation-offload:",
                        "tx-checksumming:",
                    ]
                    .iter()
                    .any(|p| l.starts_with(p))
                })
                .map(str::trim)
                .collect::<Vec<_>>()
                .into()
        };
        json!({ dev: pick(k(dev)), "up0": pick(k("up0")) })
    }

    /// Waits until a ping from the container reaches the outside.
    fn wait_connected(&self, seconds: u32) -> anyhow::Result<()> {
        for _ in 0..seconds {
            crate::proc::check_interrupted()?;
            let mut c = netns_command(&self.container_ns, "ping");
            c.args(["-n", "-q", "-c", "1", "-W", "1", OUTSIDE_IP])
                .env("LC_ALL", "C");
            if output(c).is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
        }
        bail!("no ping reply from {OUTSIDE_IP} to the container within {seconds} s")
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        // xvsd first (SIGTERM: it removes its port and its table), then the namespaces,
        // which takes every interface and rule with them.
        if let Some(mut d) = self.daemon.take() {
            d.proc.stop(Duration::from_secs(5));
        }
        self.namespaces.clear();
    }
}
