//! The switches under test, each set up between the topology's two host veths and torn down
//! when dropped (before the topology itself).
//!
//! - [`xvs`]: xvsd with both veths as ports, its worker on the switch CPU; with its own
//!   choice of kernel hook, or forced to XDP or to tc (`--hook`).
//! - [`bridge`]: the Linux bridge (forwarding in softirq, no thread of its own).
//! - [`ovs`]: Open vSwitch's userspace datapath with AF_XDP ports, its PMD on the switch CPU.
//! - [`xdp_redirect`]: a bare XDP program on each host veth that redirects every frame to the
//!   other one through a DEVMAP: no switching at all, a reference for what the kernel's fast
//!   path costs.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::lab::Topology;

pub(crate) mod bridge;
pub(crate) mod ovs;
pub(crate) mod xdp_redirect;
pub(crate) mod xvs;

/// Which switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
pub(crate) enum Kind {
    /// xvs (xvsd), with the kernel hook xvsd picks.
    Xvs,
    /// xvs with `--hook xdp`: XDP programs on its ports.
    XvsXdp,
    /// xvs with `--hook tc`: tc programs at its ports' tcx ingress.
    XvsTc,
    /// The Linux bridge.
    Bridge,
    /// Open vSwitch, userspace datapath, AF_XDP ports.
    #[value(alias = "ovs-afxdp")]
    Ovs,
    /// A bare XDP redirect between the two veths (a reference, not a switch).
    #[value(alias = "xdp-redirect")]
    Xdp,
}

impl Kind {
    /// Every kind, in the order of the report's columns.
    pub(crate) const ALL: [Kind; 6] = [
        Kind::Xvs,
        Kind::XvsXdp,
        Kind::XvsTc,
        Kind::Bridge,
        Kind::Ovs,
        Kind::Xdp,
    ];

    /// The name in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Xvs => "xvs",
            Kind::XvsXdp => "xvs-xdp",
            Kind::XvsTc => "xvs-tc",
            Kind::Bridge => "bridge",
            Kind::Ovs => "ovs-afxdp",
            Kind::Xdp => "xdp-redirect",
        }
    }

    /// The kernel hook this kind forces on xvsd (`--hook`), if it is a forced xvs.
    pub(crate) fn xvs_hook(self) -> Option<&'static str> {
        match self {
            Kind::XvsXdp => Some("xdp"),
            Kind::XvsTc => Some("tc"),
            Kind::Xvs | Kind::Bridge | Kind::Ovs | Kind::Xdp => None,
        }
    }

    /// Whether this is xvs, whatever its hook: the ratios compare xvs with the others.
    pub(crate) fn is_xvs(self) -> bool {
        matches!(self, Kind::Xvs | Kind::XvsXdp | Kind::XvsTc)
    }

    /// A reason this switch cannot be measured here, if there is one. `xvsd_args` are the
    /// extra arguments xvsd gets.
    pub(crate) fn unavailable(self, bins: &Bins, xvsd_args: &[String]) -> Option<String> {
        match self {
            Kind::Xvs | Kind::XvsXdp | Kind::XvsTc => {
                if let Some(p) = [&bins.xvsd, &bins.xvsctl]
                    .into_iter()
                    .find(|p| !p.is_file())
                {
                    return Some(format!("{} is missing", p.display()));
                }
                self.xvs_hook()
                    .and_then(|hook| xvs::hook_refused(&bins.xvsd, hook, xvsd_args))
            }
            Kind::Bridge | Kind::Xdp => None,
            Kind::Ovs => ovs::unavailable(),
        }
    }
}

/// The binaries the bench runs.
#[derive(Debug, Clone)]
pub(crate) struct Bins {
    /// xvsd.
    pub(crate) xvsd: PathBuf,
    /// xvsctl.
    pub(crate) xvsctl: PathBuf,
    /// xvs-pktgen.
    pub(crate) pktgen: PathBuf,
}

/// What every switch setup needs to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    /// The binaries.
    pub(crate) bins: &'a Bins,
    /// The CPU of the generator and of the switches' control threads.
    pub(crate) gen_cpu: usize,
    /// The CPU of the switch's datapath thread (xvs worker, OVS PMD).
    pub(crate) switch_cpu: usize,
    /// Where sockets, databases and logs go.
    pub(crate) dir: &'a Path,
    /// Extra arguments for xvsd.
    pub(crate) xvsd_args: &'a [String],
    /// Rules to install in xvs that the traffic does not match.
    pub(crate) xvs_rules: u32,
}

/// A running switch.
pub(crate) trait Switch: Debug {
    /// The process whose CPU time is the switch's, if it has one.
    fn pid(&self) -> Option<u32> {
        None
    }

    /// Facts of the setup (modes in use, versions) for the report.
    fn setup(&self) -> Value;

    /// Fails if the switch is no longer running.
    fn check(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Its state at the end of a round (counters, warnings), for the report.
    fn final_state(&mut self) -> Value {
        Value::Null
    }
}

/// Sets up `kind` between the topology's host veths.
///
/// # Errors
/// The setup failed; whatever was made is undone by the drops.
pub(crate) fn start(
    kind: Kind,
    topo: &mut Topology,
    env: &Env<'_>,
) -> anyhow::Result<Box<dyn Switch>> {
    Ok(match kind {
        Kind::Xvs | Kind::XvsXdp | Kind::XvsTc => {
            Box::new(xvs::Xvs::start(topo, env, kind.xvs_hook())?)
        }
        Kind::Bridge => Box::new(bridge::Bridge::start(topo)?),
        Kind::Ovs => Box::new(ovs::Ovs::start(topo, env)?),
        Kind::Xdp => Box::new(xdp_redirect::XdpRedirect::start(topo)?),
    })
}
