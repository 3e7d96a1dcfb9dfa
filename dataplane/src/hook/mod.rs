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
//! sockets) and `tc` (a program at tcx ingress; misses reach the workers through the upcall
//! device). A new hook is a new file here and a variant of `Hook`.

use std::os::fd::BorrowedFd;

use flowtable::PortId;
use xvs_sys::bpf::{ProgError, XdpMode};

use crate::fastpath::FastPathMaps;

pub(crate) mod tc;
pub(crate) mod xdp;

pub(crate) use tc::TcHook;
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

/// How xvsd picks a port's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookChoice {
    /// tc for veths (their peers keep GSO and TSO), XDP for every other device.
    #[default]
    Auto,
    /// This hook for every port.
    Only(HookKind),
}

impl HookChoice {
    /// The hook for a port on a device of `driver`.
    pub fn for_driver(self, driver: &str) -> HookKind {
        match self {
            HookChoice::Auto if driver == "veth" => HookKind::Tc,
            HookChoice::Auto => HookKind::Xdp,
            HookChoice::Only(kind) => kind,
        }
    }

    /// Whether a port may get the tc hook (xvsd then needs the upcall device).
    pub fn may_use_tc(self) -> bool {
        self != HookChoice::Only(HookKind::Xdp)
    }
}

impl std::str::FromStr for HookChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<HookChoice, String> {
        match s {
            "auto" => Ok(HookChoice::Auto),
            other => other
                .parse()
                .map(HookChoice::Only)
                .map_err(|_| format!("hook {other:?} is not auto, tc or xdp")),
        }
    }
}

/// A port's kernel hook, attached.
#[derive(Debug)]
pub(crate) enum Hook {
    /// XDP steering the port's queues to their AF_XDP sockets.
    Xdp(XdpHook),
    /// tc at tcx ingress, misses to the upcall device.
    Tc(TcHook),
}

impl Hook {
    /// Which hook this is.
    pub(crate) fn kind(&self) -> HookKind {
        match self {
            Hook::Xdp(_) => HookKind::Xdp,
            Hook::Tc(_) => HookKind::Tc,
        }
    }

    /// Where the XDP program runs, for an XDP hook.
    pub(crate) fn xdp_mode(&self) -> Option<XdpMode> {
        match self {
            Hook::Xdp(h) => Some(h.mode()),
            Hook::Tc(_) => None,
        }
    }

    /// Sends the frames of queue `queue` to `socket` (a tc hook sends none to a port's own
    /// sockets: its misses go to the upcall device).
    ///
    /// # Errors
    /// The kernel refuses the socket.
    pub(crate) fn steer(&self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), ProgError> {
        match self {
            Hook::Xdp(h) => h.steer(queue, socket),
            Hook::Tc(_) => Ok(()),
        }
    }

    /// Stops sending the frames of queue `queue` to a socket (they go to the stack again).
    pub(crate) fn release(&self, queue: u32) {
        match self {
            Hook::Xdp(h) => h.release(queue),
            Hook::Tc(_) => {}
        }
    }

    /// Whether this hook took over a predecessor's link that still runs the predecessor's
    /// program (see [`Hook::finish_adoption`]).
    pub(crate) fn swap_pending(&self) -> bool {
        match self {
            Hook::Xdp(h) => h.swap_pending(),
            Hook::Tc(h) => h.swap_pending(),
        }
    }

    /// Swaps this hook's program onto an adopted link; call it once the port's sockets have
    /// frames in their fill rings.
    ///
    /// # Errors
    /// The swap fails.
    pub(crate) fn finish_adoption(&mut self) -> Result<(), ProgError> {
        match self {
            Hook::Xdp(h) => h.finish_adoption(),
            Hook::Tc(h) => h.finish_adoption(),
        }
    }

    /// Pins the attachment at `path` in bpffs, for a successor to adopt (see
    /// `Switch::hand_over`).
    ///
    /// # Errors
    /// `BPF_OBJ_PIN` fails.
    pub(crate) fn pin(&self, path: &std::path::Path) -> Result<(), xvs_sys::SyscallError> {
        match self {
            Hook::Xdp(h) => h.pin(path),
            Hook::Tc(h) => h.pin(path),
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
            Hook::Tc(h) => h.set_fast_path(port, fast),
        }
    }
}
