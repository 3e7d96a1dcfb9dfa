//! xvs: xvsd with both host veths as ports, its worker pinned to the switch CPU
//! (`--cpus`), its other threads (control, accept) on the generator's CPU, plus whatever
//! `--xvsd-args` adds.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{Env, Switch};
use crate::lab::Topology;
use crate::proc::{Proc, in_ns, sleep};

/// A running xvsd.
#[derive(Debug)]
pub(crate) struct Xvs {
    daemon: Proc,
    xvsctl: PathBuf,
    socket: PathBuf,
    show: Value,
    args: Vec<String>,
}

impl Xvs {
    /// Turns GRO on at the namespaces' ends of the veths, as `xvsctl attach` and the CNI and
    /// Docker plugins do for the containers they wire (it lets the kernel fast path deliver
    /// into them; restored by the topology), then starts xvsd and waits until it answers on
    /// its socket.
    ///
    /// # Errors
    /// ethtool fails, or xvsd exits or does not answer within 15 s.
    pub(crate) fn start(topo: &mut Topology, env: &Env<'_>) -> anyhow::Result<Xvs> {
        let (src_ns, sink_ns) = (topo.src_ns.clone(), topo.sink_ns.clone());
        topo.set_offload(Some(&src_ns), "eth0", "gro", true)?;
        topo.set_offload(Some(&sink_ns), "eth0", "gro", true)?;
        let socket = env.dir.join(format!("{}-xvsd.ctl", topo.id));
        let mut args: Vec<String> = vec![
            "--socket".into(),
            socket.display().to_string(),
            "--port".into(),
            topo.vsrc.clone(),
            "--port".into(),
            topo.vsink.clone(),
            "--cpus".into(),
            env.switch_cpu.to_string(),
        ];
        args.extend(env.xvsd_args.iter().cloned());
        let mut cmd = in_ns(None, Some(env.gen_cpu), &env.bins.xvsd);
        cmd.args(&args);
        let daemon = Proc::spawn("xvsd", cmd, env.dir)?;
        let mut xvs = Xvs {
            daemon,
            xvsctl: env.bins.xvsctl.clone(),
            socket,
            show: Value::Null,
            args,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if !xvs.daemon.is_running() {
                bail!("xvsd exited: {}", xvs.daemon.stderr_tail());
            }
            if let Ok(show) = xvs.ctl(&["show"]) {
                xvs.show = show;
                xvs.install_rules(env.xvs_rules)?;
                return Ok(xvs);
            }
            if Instant::now() > deadline {
                bail!(
                    "xvsd did not answer on {} within 15 s",
                    xvs.socket.display()
                );
            }
            sleep(Duration::from_millis(100))?;
        }
    }

    /// Installs `n` rules that the generator's traffic (UDP to port 9) never matches: UDP to
    /// ports from 10000 up, over a few masks, so the classifier holds them all.
    fn install_rules(&self, n: u32) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let flows: Vec<String> = (0..n)
            .map(|i| match i % 4 {
                0 => format!(
                    "priority={},udp,tp_dst={},actions=drop",
                    100 + i % 1000,
                    10_000 + i
                ),
                1 => format!(
                    "priority={},udp,nw_src=10.{}.{}.0/24,tp_dst={},actions=drop",
                    100 + i % 1000,
                    i >> 16 & 0xff,
                    i >> 8 & 0xff,
                    10_000 + i
                ),
                2 => format!(
                    "priority={},tcp,tp_dst={},actions=drop",
                    100 + i % 1000,
                    10_000 + i
                ),
                _ => format!(
                    "priority={},udp,tp_src={},tp_dst={},actions=drop",
                    100 + i % 1000,
                    10_000 + i,
                    10_000 + i
                ),
            })
            .collect();
        let file = self.socket.with_extension("flows");
        std::fs::write(&file, flows.join("\n")).context("writing the rules file")?;
        let out = Command::new(&self.xvsctl)
            .arg("--socket")
            .arg(&self.socket)
            .arg("add-flows")
            .arg(&file)
            .output()
            .context("running xvsctl add-flows")?;
        if !out.status.success() {
            bail!("xvsctl add-flows: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Runs `xvsctl --json ARGS` and parses its output.
    fn ctl(&self, args: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(&self.xvsctl)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--json")
            .args(args)
            .output()
            .context("running xvsctl")?;
        if !out.status.success() {
            bail!(
                "xvsctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("parsing xvsctl's JSON")
    }
}

impl Switch for Xvs {
    fn pid(&self) -> Option<u32> {
        Some(self.daemon.pid())
    }

    fn setup(&self) -> Value {
        json!({
            "xvsd_args": self.args,
            "show": self.show,
            "gro_on_namespace_eth0": true,
        })
    }

    fn check(&mut self) -> anyhow::Result<()> {
        if self.daemon.is_running() {
            Ok(())
        } else {
            bail!("xvsd exited: {}", self.daemon.stderr_tail())
        }
    }

    fn final_state(&mut self) -> Value {
        json!({ "dump_ports": self.ctl(&["dump-ports"]).unwrap_or(Value::Null) })
    }
}
