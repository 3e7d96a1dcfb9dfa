//! The switch at a glance: the result of `show`.

use serde::{Deserialize, Serialize};

use crate::ports::ExternalIds;
use crate::vlan::VlanSpec;

/// The result of `show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowResult {
    /// The daemon's version.
    pub version: String,
    /// Seconds since the switch started.
    pub uptime_s: f64,
    /// Whether the in-kernel fast path is on.
    pub fast_path: bool,
    /// Every port, by number.
    pub ports: Vec<PortStatus>,
    /// The configured ports whose interface is missing (or could not be attached), by name:
    /// each is attached when its interface appears.
    #[serde(default)]
    pub absent: Vec<AbsentPort>,
    /// Every worker.
    pub workers: Vec<WorkerStatus>,
}

/// A port as `show` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// The port number.
    pub id: u16,
    /// The interface.
    pub name: String,
    /// The interface's index.
    pub ifindex: u32,
    /// The interface's MAC.
    pub mac: String,
    /// The interface's driver (`veth`, `mlx5_core`, ...).
    pub driver: String,
    /// The kernel hook that meets its frames: `tc` or `xdp`.
    pub hook: String,
    /// How its XDP program is attached (`drv`, `skb`); `None` for a port without XDP.
    pub xdp_mode: Option<String>,
    /// Whether its AF_XDP sockets are zero-copy.
    pub zero_copy: bool,
    /// How the in-kernel fast path serves it.
    pub fast_path: PortFastPath,
    /// Its queues and who serves them.
    pub queues: Vec<QueueStatus>,
    /// Its VLAN mode.
    pub vlan: VlanSpec,
    /// What its creator recorded on it.
    pub external_ids: ExternalIds,
}

/// A configured port the switch does not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentPort {
    /// The interface it waits for.
    pub name: String,
    /// Why it is not attached (`the interface disappeared`, `no such interface: ...`).
    pub reason: String,
    /// Its VLAN mode.
    pub vlan: VlanSpec,
    /// What its creator recorded on it.
    pub external_ids: ExternalIds,
}

/// A port's part in the in-kernel fast path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortFastPath {
    /// Its program runs the fast path.
    pub active: bool,
    /// Frames may be redirected to it in the kernel.
    pub redirect_target: bool,
    /// Kernel entries of flows entering here.
    pub entries: usize,
}

/// One queue of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// The queue number.
    pub queue: u32,
    /// The worker serving it.
    pub worker: usize,
    /// That worker's CPU, if pinned.
    pub cpu: Option<usize>,
}

/// A worker as `show` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its index.
    pub id: usize,
    /// Its CPU, if pinned.
    pub cpu: Option<usize>,
    /// Its kernel thread id.
    pub tid: i32,
}
