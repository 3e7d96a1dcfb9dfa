//! The Linux bridge: `{id}br` with both host veths as ports, STP off (the default), so the
//! ports forward at once. It forwards in softirq on the CPU that delivers each frame; it has
//! no thread or process of its own, so its CPU time shows only in the per-CPU figures.

use serde_json::{Value, json};

use super::Switch;
use crate::lab::Topology;
use crate::proc::{cmd, run};

/// A bridge, deleted with the topology.
#[derive(Debug)]
pub(crate) struct Bridge {
    name: String,
}

impl Bridge {
    /// Makes the bridge and enslaves both host veths.
    ///
    /// # Errors
    /// An `ip` or `sysctl` failure.
    pub(crate) fn start(topo: &mut Topology) -> anyhow::Result<Bridge> {
        let name = format!("{}br", topo.id);
        run(cmd("ip", &["link", "add", "name", &name, "type", "bridge"]))?;
        topo.track_link(&name);
        run(cmd(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{name}.disable_ipv6=1")],
        ))?;
        for port in [&topo.vsrc, &topo.vsink] {
            run(cmd("ip", &["link", "set", port, "master", &name]))?;
        }
        run(cmd("ip", &["link", "set", &name, "up"]))?;
        Ok(Bridge { name })
    }
}

impl Switch for Bridge {
    fn setup(&self) -> Value {
        json!({ "bridge": self.name, "stp": false })
    }
}
