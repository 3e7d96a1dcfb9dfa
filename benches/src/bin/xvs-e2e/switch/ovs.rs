//! Open vSwitch's userspace datapath (`datapath_type=netdev`) with AF_XDP ports, run
//! privately: its own ovsdb-server and ovs-vswitchd, database, sockets, pid files and logs in
//! a directory of the run, never the system's `/var/run/openvswitch` (every OVS command gets
//! `OVS_RUNDIR`, `OVS_DBDIR`, `OVS_LOGDIR` and `OVS_SYSCONFDIR` pointing there, and explicit
//! `--db`/`-t` paths).
//!
//! Setup, as OVS's `Documentation/intro/install/afxdp.rst` and `ovs-vswitchd.conf.db(5)`
//! describe it: `ovsdb-tool create`, `ovsdb-server --remote=punix:…`, `ovs-vsctl init`,
//! `other_config:pmd-cpu-mask` = the switch CPU (one PMD thread, pinned there), then
//! `ovs-vswitchd --disable-system` (no kernel module here), a bridge with
//! `datapath_type=netdev`, both host veths as `type=afxdp` ports with
//! `options:xdp-mode=native` (`generic` only if native fails; the report says which is in
//! use, from `dpctl/show`'s `xdp-mode-in-use`), and one flow: `actions=NORMAL` (MAC learning).
//! ovsdb-server and ovs-vswitchd's non-PMD threads run on the generator's CPU.
//!
//! Teardown: `ovs-appctl exit --cleanup` (which removes the XDP programs and the datapath),
//! then ovsdb-server's `exit`; SIGKILL for whatever has not ended by then.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xvs_testkit::have;

use super::{Env, Switch};
use crate::lab::Topology;
use crate::proc::{Proc, in_ns, output, run, sleep};

const TOOLS: [&str; 6] = [
    "ovs-vswitchd",
    "ovsdb-server",
    "ovsdb-tool",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];

/// The tap device a netdev datapath makes under this fixed name.
const DATAPATH_TAP: &str = "ovs-netdev";

fn schema() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("OVS_PKGDATADIR") {
        candidates.push(PathBuf::from(dir).join("vswitch.ovsschema"));
    }
    candidates.push("/usr/share/openvswitch/vswitch.ovsschema".into());
    candidates.push("/usr/local/share/openvswitch/vswitch.ovsschema".into());
    candidates.into_iter().find(|p| p.is_file())
}

/// Why OVS cannot be measured here, if it cannot.
pub(crate) fn unavailable() -> Option<String> {
    if let Some(tool) = TOOLS.iter().find(|t| !have(t)) {
        return Some(format!(
            "{tool} is not installed (Debian/Ubuntu: openvswitch-switch)"
        ));
    }
    if schema().is_none() {
        return Some("OVS's vswitch.ovsschema was not found (set OVS_PKGDATADIR)".into());
    }
    if Path::new("/sys/class/net").join(DATAPATH_TAP).exists() {
        return Some(format!(
            "an interface named {DATAPATH_TAP} exists: another OVS userspace datapath runs \
             here, and a second one would collide with it"
        ));
    }
    None
}

/// The `xdp-mode-in-use` of each port in `ovs-appctl dpctl/show` output.
fn xdp_modes_in_use(dpctl_show: &str) -> Vec<(String, String)> {
    dpctl_show
        .lines()
        .filter_map(|line| {
            // "  port 2: xemS (afxdp: n_rxq=1, use-need-wakeup=true, xdp-mode=native, xdp-mode-in-use=native)"
            let (_, rest) = line.trim().split_once(": ")?;
            let (port, details) = rest.split_once(' ')?;
            let mode = details.split("xdp-mode-in-use=").nth(1)?;
            let mode = mode.trim_end_matches(|c: char| c == ')' || c == ',' || c.is_whitespace());
            Some((port.to_owned(), mode.to_owned()))
        })
        .collect()
}

/// Error, emergency and warning lines of an OVS log.
fn log_problems(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("|ERR|") || l.contains("|EMER|") || l.contains("|WARN|"))
        .map(str::to_owned)
        .collect()
}

/// A private OVS.
#[derive(Debug)]
pub(crate) struct Ovs {
    dir: PathBuf,
    bridge: String,
    vswitchd: Option<Proc>,
    ovsdb: Option<Proc>,
    setup: Value,
}

impl Ovs {
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(var, &self.dir);
        }
        c
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn vsctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = self.command("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.path("db.sock")))
            .arg("--timeout=30")
            .args(args);
        run(c)
    }

    fn appctl(&self, target: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut c = self.command("ovs-appctl");
        c.arg("-t")
            .arg(self.path(&format!("{target}.ctl")))
            .arg("--timeout=10")
            .args(args);
        run(c)
    }

    fn ofctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = self.command("ovs-ofctl");
        c.args(args);
        run(c)
    }

    /// Starts both daemons and builds the bridge.
    ///
    /// # Errors
    /// Any step fails; the daemons started by then are stopped by the drop.
    pub(crate) fn start(topo: &mut Topology, env: &Env<'_>) -> anyhow::Result<Ovs> {
        let dir = env.dir.join(format!("{}-ovs", topo.id));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut ovs = Ovs {
            dir,
            bridge: format!("{}br", topo.id),
            vswitchd: None,
            ovsdb: None,
            setup: Value::Null,
        };
        // The datapath's taps go with ovs-vswitchd; should they outlive it, the topology
        // deletes them (ovs-netdev did not exist before: `unavailable` checks).
        topo.track_link(&ovs.bridge);
        topo.track_link(DATAPATH_TAP);

        let schema = schema().context("no vswitch.ovsschema")?;
        let mut create = ovs.command("ovsdb-tool");
        create.arg("create").arg(ovs.path("conf.db")).arg(&schema);
        run(create)?;

        let mut server = in_ns(None, Some(env.gen_cpu), Path::new("ovsdb-server"));
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            server.env(var, &ovs.dir);
        }
        server.args([
            ovs.path("conf.db"),
            format!("--remote=punix:{}", ovs.path("db.sock")),
            format!("--pidfile={}", ovs.path("ovsdb-server.pid")),
            format!("--unixctl={}", ovs.path("ovsdb-server.ctl")),
            format!("--log-file={}", ovs.path("ovsdb-server.log")),
            "--no-chdir".into(),
        ]);
        ovs.ovsdb = Some(Proc::spawn("ovsdb-server", server, env.dir)?);
        ovs.wait_until("ovsdb-server to listen", |o| {
            Path::new(&o.path("db.sock")).exists()
        })?;
        ovs.vsctl(&["--no-wait", "init"])?;
        let mask = format!("0x{:x}", 1u64 << env.switch_cpu);
        ovs.vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            &format!("other_config:pmd-cpu-mask={mask}"),
        ])?;

        let mut vswitchd = in_ns(None, Some(env.gen_cpu), Path::new("ovs-vswitchd"));
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            vswitchd.env(var, &ovs.dir);
        }
        vswitchd.args([
            format!("unix:{}", ovs.path("db.sock")),
            format!("--pidfile={}", ovs.path("ovs-vswitchd.pid")),
            format!("--unixctl={}", ovs.path("ovs-vswitchd.ctl")),
            format!("--log-file={}", ovs.path("ovs-vswitchd.log")),
            "--no-chdir".into(),
            "--disable-system".into(),
        ]);
        ovs.vswitchd = Some(Proc::spawn("ovs-vswitchd", vswitchd, env.dir)?);
        // ovs-vswitchd fills in iface_types once it has connected and configured itself.
        ovs.wait_until("ovs-vswitchd to start", |o| {
            o.vsctl(&["get", "Open_vSwitch", ".", "iface_types"])
                .is_ok_and(|t| t.contains("tap"))
        })?;
        let types = ovs.vsctl(&["get", "Open_vSwitch", ".", "iface_types"])?;
        if !types.contains("afxdp") {
            bail!(
                "this ovs-vswitchd has no afxdp interface type (it has {})",
                types.trim()
            );
        }

        let br = ovs.bridge.clone();
        ovs.vsctl(&[
            "add-br",
            &br,
            "--",
            "set",
            "bridge",
            &br,
            "datapath_type=netdev",
        ])?;
        let mut requested = serde_json::Map::new();
        for port in [topo.vsrc.clone(), topo.vsink.clone()] {
            let mode = ovs.add_afxdp_port(&br, &port)?;
            requested.insert(port, json!(mode));
        }
        ovs.ofctl(&["del-flows", &br])?;
        ovs.ofctl(&["add-flow", &br, "priority=0,actions=NORMAL"])?;

        let dpctl = ovs.appctl("ovs-vswitchd", &["dpctl/show"])?;
        let in_use: serde_json::Map<String, Value> = xdp_modes_in_use(&dpctl)
            .into_iter()
            .map(|(port, mode)| (port, json!(mode)))
            .collect();
        let version = run(crate::proc::cmd("ovs-vswitchd", &["--version"]))
            .map(|v| v.lines().next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        ovs.setup = json!({
            "version": version,
            "datapath_type": "netdev",
            "pmd_cpu_mask": mask,
            "flow": "priority=0,actions=NORMAL",
            "xdp_mode_requested": requested,
            "xdp_mode_in_use": in_use,
            "dpctl_show": dpctl,
            "log_problems_at_setup": ovs.log_problems(),
        });
        Ok(ovs)
    }

    /// Adds `port` as an AF_XDP port in native mode, or generic if native fails; returns the
    /// mode that worked.
    fn add_afxdp_port(&self, br: &str, port: &str) -> anyhow::Result<&'static str> {
        self.vsctl(&[
            "add-port",
            br,
            port,
            "--",
            "set",
            "interface",
            port,
            "type=afxdp",
            "options:xdp-mode=native",
        ])?;
        if self.port_ok(port)? {
            return Ok("native");
        }
        self.vsctl(&["set", "interface", port, "options:xdp-mode=generic"])?;
        if self.port_ok(port)? {
            return Ok("generic");
        }
        let error = self.vsctl(&["get", "interface", port, "error"])?;
        bail!(
            "OVS could not open {port} as an afxdp port: {}",
            error.trim()
        )
    }

    fn port_ok(&self, port: &str) -> anyhow::Result<bool> {
        let ofport = self.vsctl(&["get", "interface", port, "ofport"])?;
        Ok(ofport.trim().parse::<i64>().is_ok_and(|n| n > 0))
    }

    fn wait_until(&mut self, what: &str, ready: impl Fn(&Ovs) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if ready(self) {
                return Ok(());
            }
            for p in [&mut self.ovsdb, &mut self.vswitchd].into_iter().flatten() {
                if !p.is_running() {
                    bail!("waiting for {what}: a daemon exited: {}", p.stderr_tail());
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            sleep(Duration::from_millis(100))?;
        }
    }

    fn log_problems(&self) -> Vec<String> {
        log_problems(
            &std::fs::read_to_string(self.dir.join("ovs-vswitchd.log")).unwrap_or_default(),
        )
    }
}

impl Switch for Ovs {
    fn pid(&self) -> Option<u32> {
        self.vswitchd.as_ref().map(Proc::pid)
    }

    fn setup(&self) -> Value {
        self.setup.clone()
    }

    fn check(&mut self) -> anyhow::Result<()> {
        match &mut self.vswitchd {
            Some(p) => {
                if p.is_running() {
                    Ok(())
                } else {
                    bail!("ovs-vswitchd exited: {}", p.stderr_tail())
                }
            }
            None => bail!("ovs-vswitchd is not running"),
        }
    }

    fn final_state(&mut self) -> Value {
        json!({
            "pmd_stats": self.appctl("ovs-vswitchd", &["dpif-netdev/pmd-stats-show"]).unwrap_or_default(),
            "log_problems": self.log_problems(),
        })
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        // Each Proc's own drop then sends SIGTERM, and SIGKILL, if it still runs.
        if let Some(mut vswitchd) = self.vswitchd.take()
            && vswitchd.is_running()
        {
            let _ = self.appctl("ovs-vswitchd", &["exit", "--cleanup"]);
            vswitchd.wait_exit(Duration::from_secs(10));
        }
        if let Some(mut ovsdb) = self.ovsdb.take()
            && ovsdb.is_running()
        {
            let mut c = self.command("ovs-appctl");
            c.arg("-t")
                .arg(self.path("ovsdb-server.ctl"))
                .arg("--timeout=5")
                .arg("exit");
            let _ = output(c);
            ovsdb.wait_exit(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xdp_modes_in_use() {
        let show = "netdev@ovs-netdev:\n  lookups: hit:0 missed:0 lost:0\n  flows: 0\n  \
                    port 0: ovs-netdev (tap)\n  port 1: xembr (tap)\n  \
                    port 2: xemS (afxdp: n_rxq=1, use-need-wakeup=true, xdp-mode=native, xdp-mode-in-use=native)\n  \
                    port 3: xemK (afxdp: n_rxq=1, use-need-wakeup=true, xdp-mode=generic, xdp-mode-in-use=generic)\n";
        assert_eq!(
            xdp_modes_in_use(show),
            vec![
                ("xemS".to_owned(), "native".to_owned()),
                ("xemK".to_owned(), "generic".to_owned())
            ]
        );
    }

    #[test]
    fn picks_log_problems() {
        let log = "2026|00049|netdev_afxdp|INFO|xemS: Setting XDP mode to native.\n\
                   2026|00050|netdev_afxdp|ERR|setrlimit(RLIMIT_MEMLOCK) failed\n";
        assert_eq!(log_problems(log).len(), 1);
    }
}
