//! Ports as the control thread keeps them: an interface, its kernel hook, and its queues
//! (each served by a worker, which owns the queue's backend).

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use flowtable::PortId;
use flowtable::wire::EthernetAddress;
use xvs_sys::bpf::XdpMode;
use xvs_sys::frame::UmemArea;
use xvs_sys::xsk::{BindMode, RingSizes, XskHandle, XskRings, XskSocket};
use xvs_sys::{SyscallError, netdev, procfs};

use crate::hook::{Hook, HookKind};

/// How long to retry a bind that fails with EBUSY: a queue whose previous owner just exited
/// stays busy for a moment.
const BIND_RETRY: Duration = Duration::from_secs(3);

/// What the kernel gave a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port number.
    pub id: PortId,
    /// The interface name.
    pub name: String,
    /// The interface index.
    pub ifindex: u32,
    /// The interface's MAC address.
    pub mac: EthernetAddress,
    /// The driver (`veth`, ...).
    pub driver: String,
    /// The kernel hook that meets its frames.
    pub hook: HookKind,
    /// Where the XDP program runs (for an XDP hook).
    pub xdp_mode: Option<XdpMode>,
    /// Whether the sockets run in zero-copy mode.
    pub zero_copy: bool,
    /// Whether the port's XDP program forwards decided flows in the kernel.
    pub fast_path: bool,
    /// Whether the kernel may redirect frames to this port (for a veth: its peer has XDP or
    /// GRO on).
    pub redirect_target: bool,
    /// For each queue, the worker that serves it and that worker's CPU.
    pub queues: Vec<QueueInfo>,
}

/// One queue of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue id.
    pub queue: u32,
    /// The worker serving it.
    pub worker: usize,
    /// That worker's CPU, if pinned.
    pub cpu: Option<usize>,
}

/// Facts about an interface, read before it becomes a port.
#[derive(Debug, Clone)]
pub(crate) struct Interface {
    pub(crate) name: String,
    pub(crate) ifindex: u32,
    pub(crate) mac: EthernetAddress,
    pub(crate) driver: String,
    pub(crate) queues: u32,
}

impl Interface {
    /// Looks an interface up by name.
    pub(crate) fn lookup(name: &str) -> Result<Interface, SyscallError> {
        let ifindex = netdev::if_nametoindex(name)?;
        let mac = procfs::interface_mac(name, ifindex)
            .map(EthernetAddress)
            .unwrap_or_default();
        let driver = netdev::driver(name).unwrap_or_else(|_| "unknown".to_owned());
        let queues = match netdev::channels(name) {
            Ok(ch) => (ch.rx_count + ch.combined_count).max(1),
            Err(_) => procfs::rx_queues(name).unwrap_or(1),
        };
        Ok(Interface {
            name: name.to_owned(),
            ifindex,
            mac,
            driver,
            queues,
        })
    }

    /// Whether the driver hands AF_XDP frames whose TCP/UDP checksums may be unfinished.
    pub(crate) fn needs_checksum_fix(&self) -> bool {
        // veth passes CHECKSUM_PARTIAL skbs from its peer straight to XDP.
        self.driver == "veth"
    }

    /// Whether zero-copy is worth trying (veth never has it).
    pub(crate) fn may_zero_copy(&self) -> bool {
        self.driver != "veth"
    }
}

/// Opens a socket, retrying while the queue is busy.
pub(crate) fn open_socket(
    area: &std::sync::Arc<UmemArea>,
    tag: u16,
    ifindex: u32,
    queue: u32,
    sizes: RingSizes,
    mode: BindMode,
    share_with: Option<BorrowedFd<'_>>,
) -> Result<(XskSocket, XskRings), SyscallError> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match XskSocket::open(area, tag, ifindex, queue, sizes, mode, share_with) {
            Err(e) if e.errno() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// A queue as the control thread keeps it: the worker that serves it, and a handle on its
/// socket (the worker owns the socket itself).
#[derive(Debug)]
pub(crate) struct PortQueue {
    pub(crate) queue: u32,
    pub(crate) worker: usize,
    /// The tag of the socket's frames in the UMEM.
    pub(crate) tag: u16,
    pub(crate) socket: XskHandle,
}

/// A port as the control thread keeps it.
#[derive(Debug)]
pub(crate) struct Port {
    pub(crate) id: PortId,
    pub(crate) interface: Interface,
    pub(crate) umem: u16,
    pub(crate) zero_copy: bool,
    pub(crate) queues: Vec<PortQueue>,
    pub(crate) hook: Hook,
}

impl Port {
    /// Whether the interface is still the one we attached to.
    pub(crate) fn is_present(&self) -> bool {
        netdev::if_nametoindex(&self.interface.name).ok() == Some(self.interface.ifindex)
    }
}
