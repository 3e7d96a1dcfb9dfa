//! Kernel hooks: the program that meets a port's frames first, how it is chosen, attached
//! and detached.
//!
//! `Hook` is the one type the switch holds per port. It owns the program choice (the plain
//! steering program, or the fast path's lookup-and-redirect), the attachment (a bpf_link, so a
//! crashed xvsd leaves nothing attached), the live program swap when the fast path is turned
//! on or off, and the steering of the port's queues to their sockets. The fast path's map
//! layouts, which every hook's program reads, are in `crate::fastpath::abi`.
//!
//! Hooks: `xdp` (XDP on the driver, or generic XDP, with an XSKMAP to the port's AF_XDP
//! sockets). A new hook (tc at tcx ingress) is a new file here and a variant of `Hook`.

use std::os::fd::BorrowedFd;

use flowtable::PortId;
use xvs_sys::bpf::{ProgError, XdpMode};

use crate::fastpath::FastPathMaps;

pub(crate) mod xdp;

pub(crate) use xdp::{LoadedXdp, XdpHook};

/// Which hook a port uses, as `show` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// XDP, in the driver or generic, steering to the port's AF_XDP sockets.
    Xdp,
    /// A tc program at tcx ingress: misses go to the workers through the upcall device, and
    /// the port's socket only sends.
    Tc,
}

impl HookKind {
    /// `xdp` or `tc`.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Xdp => "xdp",
            HookKind::Tc => "tc",
        }
    }
}

impl std::str::FromStr for HookKind {
    type Err = String;

    fn from_str(s: &str) -> Result<HookKind, String> {
        match s {
            "xdp" => Ok(HookKind::Xdp),
            "tc" => Ok(HookKind::Tc),
            other => Err(format!("hook {other:?} is not tc or xdp")),
        }
    }
}

/// A port's kernel hook, attached.
#[derive(Debug)]
pub(crate) enum Hook {
    /// XDP steering the port's queues to their AF_XDP sockets.
    Xdp(XdpHook),
}

impl Hook {
    /// Which hook this is.
    pub(crate) fn kind(&self) -> HookKind {
        match self {
            Hook::Xdp(_) => HookKind::Xdp,
        }
    }

    /// Where the XDP program runs, for an XDP hook.
    pub(crate) fn xdp_mode(&self) -> Option<XdpMode> {
        match self {
            Hook::Xdp(h) => Some(h.mode()),
        }
    }

    /// Sends the frames of queue `queue` to `socket`.
    ///
    /// # Errors
    /// The kernel refuses the socket.
    pub(crate) fn steer(&self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), ProgError> {
        match self {
            Hook::Xdp(h) => h.steer(queue, socket),
        }
    }

    /// Stops sending the frames of queue `queue` to a socket (they go to the stack again).
    pub(crate) fn release(&self, queue: u32) {
        match self {
            Hook::Xdp(h) => h.release(queue),
        }
    }

    /// Swaps the program on the live attachment for the fast path's (with `fast`) or the
    /// plain one: no frame meets a detached interface.
    ///
    /// # Errors
    /// The kernel refuses the program or the swap.
    pub(crate) fn set_fast_path(
        &mut self,
        port: PortId,
        fast: Option<&FastPathMaps>,
    ) -> Result<(), ProgError> {
        match self {
            Hook::Xdp(h) => h.set_fast_path(port, fast),
        }
    }
}
