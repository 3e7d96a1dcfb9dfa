//! The XDP hook: a program on the port's interface (native, else generic) that redirects each
//! queue's frames to the AF_XDP socket in that queue's XSKMAP slot, looking the flow up in the
//! fast path's map first when the fast path is on.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use flowtable::PortId;
use xvs_sys::bpf::{Insn, ProgError, XdpLink, XdpMode, XskMap, load_xdp, redirect_to_xsk};

use crate::fastpath::{self, FastPathMaps};

/// The program for a port: the fast path's lookup (with `fast`; finishing checksums left for
/// offload with `finish_checksums`) or plain steering.
fn program(
    xskmap: &XskMap,
    port: PortId,
    fast: Option<&FastPathMaps>,
    finish_checksums: bool,
) -> Vec<Insn> {
    match fast {
        Some(maps) => fastpath::program(maps, xskmap.as_fd(), port, finish_checksums),
        None => redirect_to_xsk(xskmap.as_fd()),
    }
}

/// Whether the kernel accepts the fast path's program (loaded once, with throwaway maps'
/// twins: the real maps, and a one-slot XSKMAP).
///
/// # Errors
/// The verifier refuses the program.
pub(crate) fn probe_fast_path(maps: &FastPathMaps) -> Result<(), ProgError> {
    let xsks = XskMap::new(1, "xvs_probe").map_err(ProgError::Map)?;
    load_xdp(&program(&xsks, 0, Some(maps), true), "xvs_probe").map(drop)
}

/// A port's program and XSKMAP, loaded but not attached yet: until [`LoadedXdp::attach`], the
/// interface's traffic keeps going to the stack.
#[derive(Debug)]
pub(crate) struct LoadedXdp {
    xskmap: XskMap,
    prog: OwnedFd,
    finish_checksums: bool,
}

impl LoadedXdp {
    /// Loads the program of port `port` for `queues` queues; `finish_checksums` for a device
    /// whose frames may carry TCP/UDP checksums left for offload (a veth).
    ///
    /// # Errors
    /// The XSKMAP cannot be created or the verifier refuses the program.
    pub(crate) fn load(
        port: PortId,
        queues: u32,
        fast: Option<&FastPathMaps>,
        finish_checksums: bool,
    ) -> Result<LoadedXdp, ProgError> {
        let xskmap = XskMap::new(queues, &format!("xvs_xsks_{port}")).map_err(ProgError::Map)?;
        let prog = load_xdp(&program(&xskmap, port, fast, finish_checksums), "xvs_port")?;
        Ok(LoadedXdp {
            xskmap,
            prog,
            finish_checksums,
        })
    }

    /// Attaches the program to `ifindex` in `mode` (default: native, else generic).
    ///
    /// # Errors
    /// [`ProgError::Attach`]: EBUSY when another program is attached.
    pub(crate) fn attach(
        self,
        ifindex: u32,
        ifname: &str,
        mode: Option<XdpMode>,
    ) -> Result<XdpHook, ProgError> {
        let link = XdpLink::attach(self.prog.as_fd(), ifindex, ifname, mode)?;
        Ok(XdpHook {
            xskmap: self.xskmap,
            prog: self.prog,
            finish_checksums: self.finish_checksums,
            link,
            swap_pending: false,
        })
    }

    /// Takes over `link`, a predecessor's XDP attachment on the interface, which keeps
    /// running the predecessor's program until [`XdpHook::finish_adoption`]: by then the
    /// queues are steered to sockets whose fill rings have frames, so that no frame the new
    /// program sends up finds an empty ring.
    pub(crate) fn adopt(self, link: XdpLink) -> XdpHook {
        XdpHook {
            xskmap: self.xskmap,
            prog: self.prog,
            finish_checksums: self.finish_checksums,
            link,
            swap_pending: true,
        }
    }
}

/// An attached XDP hook. Dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct XdpHook {
    xskmap: XskMap,
    /// The program the link runs (once `swap_pending` is false).
    prog: OwnedFd,
    /// Its fast path finishes checksums left for offload.
    finish_checksums: bool,
    link: XdpLink,
    /// An adopted link still runs its predecessor's program.
    swap_pending: bool,
}

impl XdpHook {
    pub(crate) fn mode(&self) -> XdpMode {
        self.link.mode()
    }

    pub(crate) fn steer(&self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), ProgError> {
        self.xskmap.set(queue, socket).map_err(ProgError::Map)
    }

    /// Whether the link still runs a predecessor's program.
    pub(crate) fn swap_pending(&self) -> bool {
        self.swap_pending
    }

    /// Swaps this hook's program onto an adopted link.
    ///
    /// # Errors
    /// The swap fails (the interface went away).
    pub(crate) fn finish_adoption(&mut self) -> Result<(), ProgError> {
        if self.swap_pending {
            self.link
                .replace(self.prog.as_fd())
                .map_err(ProgError::Replace)?;
            self.swap_pending = false;
        }
        Ok(())
    }

    pub(crate) fn pin(&self, path: &std::path::Path) -> Result<(), xvs_sys::SyscallError> {
        self.link.pin(path)
    }

    pub(crate) fn release(&self, queue: u32) {
        let _ = self.xskmap.clear(queue);
    }

    pub(crate) fn set_fast_path(
        &mut self,
        port: PortId,
        fast: Option<&FastPathMaps>,
    ) -> Result<(), ProgError> {
        let new = load_xdp(
            &program(&self.xskmap, port, fast, self.finish_checksums),
            "xvs_port",
        )?;
        if !self.swap_pending {
            self.link.replace(new.as_fd()).map_err(ProgError::Replace)?;
        }
        self.prog = new;
        Ok(())
    }
}
