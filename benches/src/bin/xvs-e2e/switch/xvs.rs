//! xvs: xvsd with both host veths as ports, its worker pinned to the switch CPU
//! (`--cpus`), its other threads (control, accept) on the generator's CPU, plus whatever
//! `--xvsd-args` adds; for the forced variants, `--hook xdp` or `--hook tc`, which an xvsd
//! older than the tc hook refuses (the variant is then reported unavailable, with xvsd's
//! words).

use std::path::{Path, PathBuf};
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
    hook: Option<&'static str>,
}

/// Why xvsd cannot run with `--hook HOOK`, if it cannot: `--xvsd-args` chose a hook already,
/// or the xvsd under test refuses the option (one older than the tc hook) or the value.
pub(crate) fn hook_refused(xvsd: &Path, hook: &str, xvsd_args: &[String]) -> Option<String> {
    if xvsd_args
        .iter()
        .any(|a| a == "--hook" || a.starts_with("--hook="))
    {
        return Some("--xvsd-args chooses a --hook already".to_owned());
    }
    // clap parses every argument before it acts on --help: this succeeds only if xvsd knows
    // --hook and takes this value.
    let out = match Command::new(xvsd)
        .args(["--hook", hook, "--help"])
        .env_remove("XVS_SOCKET")
        .output()
    {
        Ok(out) => out,
        Err(e) => return Some(format!("cannot run {}: {e}", xvsd.display())),
    };
    (!out.status.success()).then(|| refusal(hook, &String::from_utf8_lossy(&out.stderr)))
}

/// The reason to report for a refused `--hook`: the first line xvsd said.
fn refusal(hook: &str, stderr: &str) -> String {
    let why = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no reason given");
    format!("this xvsd refuses `--hook {hook}`: {why}")
}

impl Xvs {
    /// Turns GRO on at the namespaces' ends of the veths, as `xvsctl attach` and the CNI and
    /// Docker plugins do for the containers they wire (it lets the kernel fast path deliver
    /// into them; restored by the topology), then starts xvsd and waits until it answers on
    /// its socket.
    ///
    /// # Errors
    /// ethtool fails, or xvsd exits or does not answer within 15 s.
    pub(crate) fn start(
        topo: &mut Topology,
        env: &Env<'_>,
        hook: Option<&'static str>,
    ) -> anyhow::Result<Xvs> {
        let (src_ns, sink_ns) = (topo.src_ns.clone(), topo.sink_ns.clone());
        topo.set_offload(Some(&src_ns), "eth0", "gro", true)?;
        topo.set_offload(Some(&sink_ns), "eth0", "gro", true)?;
        let socket = env.dir.join(format!("{}-xvsd.ctl", topo.id));
        // A state directory of its own: each start is empty, beside any installed xvsd.
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state = env.dir.join(format!("{}-state{n}", topo.id));
        let mut args: Vec<String> = vec![
            "--socket".into(),
            socket.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--port".into(),
            topo.vsrc.clone(),
            "--port".into(),
            topo.vsink.clone(),
            "--cpus".into(),
            env.switch_cpu.to_string(),
        ];
        if let Some(hook) = hook {
            args.extend(["--hook".to_owned(), hook.to_owned()]);
        }
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
            hook,
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
        self.add_flows(&flows)
    }

    /// Installs `flows` (ovs-ofctl syntax, one rule each) with `xvsctl add-flows FILE`.
    ///
    /// # Errors
    /// The file cannot be written, or xvsctl refuses the rules.
    pub(crate) fn add_flows(&self, flows: &[String]) -> anyhow::Result<()> {
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
    pub(crate) fn ctl(&self, args: &[&str]) -> anyhow::Result<Value> {
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
            "hook": self.hook.unwrap_or("xvsd's default"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_hook_says_why() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Programs that stand in for an xvsd that takes any arguments, and one that refuses.
        assert_eq!(hook_refused(Path::new("/bin/true"), "tc", &[]), None);
        assert_eq!(
            hook_refused(Path::new("/bin/false"), "tc", &[]).as_deref(),
            Some("this xvsd refuses `--hook tc`: no reason given")
        );
        let chosen = hook_refused(Path::new("/bin/true"), "xdp", &args(&["--hook=tc"]));
        assert!(chosen.unwrap().contains("--xvsd-args"));
        assert!(
            hook_refused(Path::new("/nonexistent/xvsd"), "tc", &[])
                .unwrap()
                .contains("cannot run")
        );
        let clap = "error: unexpected argument '--hook' found\n\nUsage: xvsd [OPTIONS]\n";
        assert_eq!(
            refusal("xdp", clap),
            "this xvsd refuses `--hook xdp`: error: unexpected argument '--hook' found"
        );
    }
}
