//! The upcall device: how frames that tc-hooked ports do not forward in the kernel reach the
//! workers.
//!
//! A veth pair xvsd owns, made at start (a stale one from a crashed xvsd is removed first)
//! and removed at stop. A port's tc program redirects a miss to the near end (`NAME`),
//! prefixed with the port's number (`flowtable::wire::upcall`). The far end (`NAMEx`)
//! carries the plain XDP steering program and one AF_XDP socket per worker, one queue each;
//! those queues' ingress is the prefix, not the socket. An XDP program on the far end turns
//! off GSO on the near end, so the kernel segments GSO skbs on their way in, and every
//! segment keeps the prefix.

use flowtable::PortId;
use xvs_sys::bpf::XdpMode;
use xvs_sys::netlink::{NetlinkError, Rtnetlink, VethPair};

use super::{Switch, SwitchError};
use crate::backend::afxdp::AfXdpQueue;
use crate::backend::{Ingress, QueueBackend};
use crate::hook::{Hook, LoadedXdp};
use crate::port::{Interface, PortQueue};
use crate::worker::{Command, Queue};

/// The number the upcall device's queues count under (no port has it).
pub(crate) const UPCALL_PORT: PortId = 0;

/// The pair's MTU: a 1500-byte packet with its Ethernet header, an upcall prefix and room
/// for a tag, well under what native XDP on a veth allows.
const MTU: u32 = 1600;

/// The upcall device as the switch keeps it.
#[derive(Debug)]
pub(crate) struct Upcall {
    /// The near end's name.
    pub(crate) name: String,
    /// The near end, where tc programs redirect misses.
    pub(crate) ifindex: u32,
    pub(crate) umem: u16,
    pub(crate) queues: Vec<PortQueue>,
    /// The far end's XDP program; dropped before its sockets close.
    pub(crate) hook: Hook,
}

/// The far end's name.
fn far_name(name: &str) -> String {
    format!("{name}x")
}

/// Makes the pair, after removing one of that name left by a crashed xvsd, and brings both
/// ends up. Returns the near end's index.
fn make_link(name: &str, queues: u32) -> Result<u32, NetlinkError> {
    let far = far_name(name);
    let mut rtnl = Rtnetlink::open()?;
    for stale in [name, far.as_str()] {
        if rtnl.delete_link(stale)? {
            tracing::info!(name = stale, "removed a stale upcall device");
        }
    }
    rtnl.add_veth(&VethPair {
        name,
        peer_name: &far,
        peer_netns: None,
        peer_mac: None,
        mtu: Some(MTU),
        queues: Some(queues),
    })?;
    let mut up = |end: &str| {
        let link = rtnl.link(end)?.ok_or(NetlinkError::Os {
            op: "find the upcall device",
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        rtnl.set_up(link.index).map(|()| link.index)
    };
    up(&far)?;
    up(name)
}

/// Removes the pair (both ends go together).
pub(crate) fn remove_link(name: &str) {
    match Rtnetlink::open().and_then(|mut rtnl| rtnl.delete_link(name)) {
        Ok(_) => tracing::info!(name, "upcall device removed"),
        Err(e) => tracing::warn!(name, "cannot remove the upcall device: {e}"),
    }
}

impl Switch {
    /// Makes the upcall device and gives each worker its queue.
    ///
    /// # Errors
    /// The pair cannot be made, or its XDP program or sockets cannot be set up (nothing is
    /// left behind).
    pub(super) fn add_upcall(&mut self) -> Result<(), SwitchError> {
        let name = self.options.upcall.clone();
        let workers = self.workers.len() as u32;
        let upcall_error = |source| SwitchError::Upcall {
            name: name.clone(),
            source,
        };
        let ifindex = make_link(&name, workers).map_err(upcall_error)?;
        let result = self.attach_upcall(&name, ifindex, workers);
        if result.is_err() {
            remove_link(&name);
        }
        result
    }

    fn attach_upcall(&mut self, name: &str, ifindex: u32, workers: u32) -> Result<(), SwitchError> {
        let far = Interface::lookup(&far_name(name))?;
        let loaded = LoadedXdp::load(UPCALL_PORT, workers, None, false)?;
        let (hook, opened, umem, _) =
            self.attach_steered(loaded, &far, workers, Some(XdpMode::Driver))?;
        let mut queues = Vec::with_capacity(opened.len());
        for o in opened {
            let backend: Box<dyn QueueBackend> = Box::new(AfXdpQueue::new(o.socket, o.rings));
            // Frames from containers may carry checksums left for offload: finish them.
            let queue = Queue::new(
                UPCALL_PORT,
                o.queue.queue,
                Ingress::Tagged,
                false,
                backend,
                true,
                umem,
            );
            self.workers[o.queue.worker].send(Command::AddQueue(Box::new(queue)))?;
            queues.push(o.queue);
        }
        tracing::info!(name, ifindex, queues = queues.len(), "upcall device up");
        self.upcall = Some(Upcall {
            name: name.to_owned(),
            ifindex,
            umem,
            queues,
            hook,
        });
        self.update_fill_target(0);
        Ok(())
    }
}
