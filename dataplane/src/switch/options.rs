//! How to build a switch and how to add a port.

use std::path::PathBuf;

use flowtable::VlanMode;
use xvs_sys::bpf::XdpMode;
use xvs_sys::procfs;

use crate::hook::{HookChoice, HookKind};
#[cfg(doc)]
use crate::switch::Switch;

/// The upcall device's name when the options name none.
pub const DEFAULT_UPCALL: &str = "xvs-upcall";

/// How to build a switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// One entry per worker: the CPU to pin it to, or `None` to leave it floating.
    pub workers: Vec<Option<usize>>,
    /// Frames per UMEM.
    pub umem_frames: u32,
    /// Bytes per frame (a power of two, at least 2048).
    pub frame_size: u32,
    /// Slots of each ring.
    pub ring_size: u32,
    /// Never sleep, even without traffic.
    pub busy_poll: bool,
    /// Slots of each worker's flow cache.
    pub cache_capacity: usize,
    /// Forward decided flows in the kernel (XDP or tc redirect) where the kernel supports it.
    pub fast_path: bool,
    /// Which hook ports get.
    pub hook: HookChoice,
    /// The upcall device (a veth pair, this name and the name with `x` after it) through
    /// which tc-hooked ports' misses reach the workers; made at start unless every port is
    /// to use XDP, removed at stop.
    pub upcall: String,
    /// The bpffs directory of planned restarts (see [`Switch::hand_over`]): links a
    /// predecessor pinned there are adopted by the ports of their interfaces, and this
    /// switch pins its own there when it hands over.
    pub handover: Option<PathBuf>,
}

/// The default UMEM size in frames: 16384 (32 MiB of 2 KiB frames) where the process may lock
/// that much (it has CAP_IPC_LOCK, which exempts AF_XDP UMEMs from RLIMIT_MEMLOCK, or a high
/// enough limit), else as many as RLIMIT_MEMLOCK allows with room to spare, at least 1024.
pub fn default_umem_frames(frame_size: u32) -> u32 {
    let ipc_lock = procfs::Capabilities::effective().is_some_and(|c| c.has(procfs::CAP_IPC_LOCK));
    umem_frames_for(frame_size, ipc_lock, procfs::memlock_limit())
}

/// [`default_umem_frames`] for a process with (or without) CAP_IPC_LOCK and a soft
/// RLIMIT_MEMLOCK of `memlock` bytes (`None`: unknown, taken as none).
pub(crate) fn umem_frames_for(frame_size: u32, ipc_lock: bool, memlock: Option<u64>) -> u32 {
    const WANT: u32 = 16384;
    if ipc_lock {
        return WANT;
    }
    let soft = memlock.unwrap_or(0);
    // Leave a quarter for other locked memory of the same user.
    let fits = (soft / 4 * 3 / u64::from(frame_size)).min(u64::from(WANT)) as u32;
    fits.clamp(1024, WANT)
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            workers: vec![None],
            umem_frames: default_umem_frames(2048),
            frame_size: 2048,
            ring_size: 2048,
            busy_poll: false,
            cache_capacity: flowtable::cache::DEFAULT_CAPACITY,
            fast_path: true,
            hook: HookChoice::Auto,
            upcall: DEFAULT_UPCALL.to_owned(),
            handover: None,
        }
    }
}

/// How to add a port.
#[derive(Debug, Clone, Default)]
pub struct PortOptions {
    /// How many queues to serve (default: every queue the interface has).
    pub queues: Option<u32>,
    /// Force a hook (default: the switch's choice for the device).
    pub hook: Option<HookKind>,
    /// Force an XDP mode (default: native, else generic).
    pub xdp_mode: Option<XdpMode>,
    /// VLAN mode.
    pub vlan: VlanMode,
}
