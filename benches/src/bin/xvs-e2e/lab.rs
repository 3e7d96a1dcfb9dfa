//! The topology of one measurement, and its guard: a source namespace and a sink namespace,
//! each with an `eth0` whose peer is a host veth (`{id}vsrc`, `{id}vsink`) for the switch to
//! join.
//!
//! ```text
//!   {id}-src netns                 host                          {id}-sink netns
//!   eth0 198.18.0.1 ── {id}vsrc ═ switch under test ═ {id}vsink ── eth0 198.18.0.2
//! ```
//!
//! Names carry the bench's process id and a counter, so nothing else on the machine is
//! touched; the addresses are the benchmarking range of RFC 2544 and exist only inside the
//! namespaces. IPv6 is off everywhere, so that no neighbor discovery lands in the counts.
//! Dropping a [`Topology`] restores the offloads it changed and deletes its links and
//! namespaces, on every path (errors, panics, Ctrl-C).

use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;
use xvs_testkit::{Link, Netns, VethPair, netns_command, unique_name};

use crate::proc::{cmd, output, run};

/// The source's address (the generator's default source address too).
pub(crate) const SRC_IP: &str = "198.18.0.1";
/// The sink's address (the generator's default destination address too).
pub(crate) const SINK_IP: &str = "198.18.0.2";

/// An offload setting to put back.
#[derive(Debug)]
struct Restore {
    ns: Option<String>,
    dev: String,
    feature: String,
    on: bool,
}

/// Two namespaces wired to two host veths, removed on drop.
#[derive(Debug)]
pub(crate) struct Topology {
    /// The unique prefix of every name.
    pub(crate) id: String,
    /// The source namespace (the generator, the iperf3 client).
    pub(crate) src_ns: String,
    /// The sink namespace (the counter, the iperf3 server).
    pub(crate) sink_ns: String,
    /// The host end of the source's veth: the switch's ingress port.
    pub(crate) vsrc: String,
    /// The host end of the sink's veth: the switch's egress port.
    pub(crate) vsink: String,
    /// The MAC address of the sink's `eth0` (the generator's destination).
    pub(crate) sink_mac: String,
    restores: Vec<Restore>,
    /// Links made outside the namespaces (a bridge), deleted first.
    links: Vec<Link>,
    veths: Vec<VethPair>,
    namespaces: Vec<Netns>,
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(cmd("ip", args))
}

fn ethtool(ns: Option<&str>, args: &[&str]) -> Command {
    let mut c = match ns {
        Some(ns) => netns_command(ns, "ethtool"),
        None => Command::new("ethtool"),
    };
    c.args(args);
    c
}

/// Whether `ethtool -k` output says `feature` (its long name) is on.
fn feature_state(ethtool_k: &str, long_name: &str) -> Option<bool> {
    ethtool_k.lines().find_map(|line| {
        let (name, value) = line.trim().split_once(':')?;
        (name == long_name).then(|| value.trim_start().starts_with("on"))
    })
}

/// The long name `ethtool -k` shows for a short `-K` feature name.
fn long_name(feature: &str) -> &str {
    match feature {
        "gro" => "generic-receive-offload",
        "tx" => "tx-checksumming",
        "tso" => "tcp-segmentation-offload",
        "gso" => "generic-segmentation-offload",
        other => other,
    }
}

impl Topology {
    /// Makes a new topology with names unique to this process.
    ///
    /// # Errors
    /// Any `ip` or `sysctl` failure; whatever was made by then is removed.
    pub(crate) fn create() -> anyhow::Result<Topology> {
        let id = unique_name("xe");
        let mut topo = Topology {
            src_ns: format!("{id}-src"),
            sink_ns: format!("{id}-sink"),
            vsrc: format!("{id}vsrc"),
            vsink: format!("{id}vsink"),
            sink_mac: String::new(),
            id,
            restores: Vec::new(),
            links: Vec::new(),
            veths: Vec::new(),
            namespaces: Vec::new(),
        };
        // From here on, Drop removes whatever was made.
        for (ns, host, addr) in [
            (topo.src_ns.clone(), topo.vsrc.clone(), SRC_IP),
            (topo.sink_ns.clone(), topo.vsink.clone(), SINK_IP),
        ] {
            let netns = Netns::new(ns.clone())?;
            let veth = VethPair::build(&host, "eth0").peer_netns(&netns).create()?;
            xvs_testkit::sysctl(&format!("net.ipv6.conf.{host}.disable_ipv6=1"))?;
            for key in ["all", "default", "eth0"] {
                netns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"))?;
            }
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            veth.set_up()?;
            topo.namespaces.push(netns);
            topo.veths.push(veth);
        }
        topo.sink_mac = topo.mac(Some(&topo.sink_ns.clone()), "eth0")?;
        Ok(topo)
    }

    /// The MAC address of `dev` in `ns` (the host with `None`).
    pub(crate) fn mac(&self, ns: Option<&str>, dev: &str) -> anyhow::Result<String> {
        let out = match ns {
            Some(ns) => ip(&["-n", ns, "-j", "link", "show", "dev", dev])?,
            None => ip(&["-j", "link", "show", "dev", dev])?,
        };
        let v: Value = serde_json::from_str(&out).context("parsing `ip -j link`")?;
        v[0]["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no MAC address for {dev}"))
    }

    /// Deletes a host link (a bridge, say) along with the topology.
    pub(crate) fn track_link(&mut self, name: &str) {
        self.links.push(Link::adopt(name));
    }

    /// Turns an offload (`ethtool -K` name) on or off on `dev` in `ns` (the host with `None`)
    /// and puts the old setting back on drop.
    ///
    /// # Errors
    /// ethtool fails or does not show the feature.
    pub(crate) fn set_offload(
        &mut self,
        ns: Option<&str>,
        dev: &str,
        feature: &str,
        on: bool,
    ) -> anyhow::Result<()> {
        let shown = run(ethtool(ns, &["-k", dev]))?;
        let was = feature_state(&shown, long_name(feature))
            .with_context(|| format!("ethtool -k {dev} does not show {feature}"))?;
        if was == on {
            return Ok(());
        }
        run(ethtool(
            ns,
            &["-K", dev, feature, if on { "on" } else { "off" }],
        ))?;
        self.restores.push(Restore {
            ns: ns.map(str::to_owned),
            dev: dev.to_owned(),
            feature: feature.to_owned(),
            on: was,
        });
        Ok(())
    }

    /// Runs `f` with an offload (`ethtool -K` name) turned on or off on both namespaces'
    /// `eth0`, and puts the old settings back after it, whatever it returned.
    ///
    /// # Errors
    /// ethtool fails, or `f` does.
    pub(crate) fn with_namespace_offload<T>(
        &mut self,
        feature: &str,
        on: bool,
        f: impl FnOnce(&Topology) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mark = self.restores.len();
        let (src_ns, sink_ns) = (self.src_ns.clone(), self.sink_ns.clone());
        let result = self
            .set_offload(Some(&src_ns), "eth0", feature, on)
            .and_then(|()| self.set_offload(Some(&sink_ns), "eth0", feature, on))
            .and_then(|()| f(self));
        self.restore_offloads(mark);
        result
    }

    /// Puts back the offload settings changed since the `mark`-th change, the last first.
    fn restore_offloads(&mut self, mark: usize) {
        for r in self.restores.drain(mark..).rev() {
            let _ = output(ethtool(
                r.ns.as_deref(),
                &["-K", &r.dev, &r.feature, if r.on { "on" } else { "off" }],
            ));
        }
    }

    /// The mode of the XDP program attached to host link `dev`: `Some("drv")`, `Some("skb")`
    /// (generic) or `None`.
    pub(crate) fn xdp_mode(&self, dev: &str) -> anyhow::Result<Option<&'static str>> {
        let out = ip(&["-d", "-j", "link", "show", "dev", dev])?;
        let v: Value = serde_json::from_str(&out).context("parsing `ip -d -j link`")?;
        // XDP_ATTACHED_DRV = 1, _SKB = 2, _HW = 3, _MULTI = 4 (then per-program modes).
        Ok(match v[0]["xdp"]["mode"].as_u64() {
            Some(1) => Some("drv"),
            Some(2) => Some("skb"),
            Some(3) => Some("hw"),
            Some(4) => Some("multi"),
            _ => None,
        })
    }

    /// Pings the source from the sink once, so that learning switches know both MAC
    /// addresses (the generator's frames then go to the sink's port alone, not flooded).
    /// Returns whether the reply came.
    pub(crate) fn prime(&self) -> bool {
        let mut c = netns_command(&self.sink_ns, "ping");
        c.args(["-n", "-q", "-c", "1", "-W", "1", SRC_IP])
            .env("LC_ALL", "C");
        output(c).is_ok_and(|o| o.status.success())
    }

    /// Waits until a ping crosses the switch (it may still be setting up).
    ///
    /// # Errors
    /// No reply within `seconds`.
    pub(crate) fn wait_connected(&self, seconds: u32) -> anyhow::Result<()> {
        for _ in 0..seconds {
            crate::proc::check_interrupted()?;
            if self.prime() {
                return Ok(());
            }
        }
        bail!(
            "no ping reply from {SRC_IP} to {SINK_IP}'s namespace through the switch within {seconds} s"
        )
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.restore_offloads(0);
        // The guards' own drops, in this order: links made outside the namespaces (a
        // bridge; the last made first), the veths, then the namespaces.
        for link in self.links.drain(..).rev() {
            drop(link);
        }
        self.veths.clear();
        self.namespaces.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ETHTOOL_K: &str = "Features for vsrc:\n\
        rx-checksumming: on\n\
        tx-checksumming: on\n\
        \ttx-checksum-ipv4: off [fixed]\n\
        generic-receive-offload: off\n\
        rx-gro-hw: off [fixed]\n";

    #[test]
    fn reads_feature_states() {
        assert_eq!(feature_state(ETHTOOL_K, long_name("gro")), Some(false));
        assert_eq!(feature_state(ETHTOOL_K, long_name("tx")), Some(true));
        assert_eq!(feature_state(ETHTOOL_K, "tx-checksum-ipv4"), Some(false));
        assert_eq!(feature_state(ETHTOOL_K, "nonexistent"), None);
    }
}
