//! The tc hook: a `SCHED_CLS` program at the port interface's tcx ingress. It forwards the
//! flows the fast path decided straight to their destination (into a container with
//! `bpf_redirect_peer`) and sends every other frame to the workers through the upcall
//! device. No XDP program sits on the interface, so a veth keeps its peer's GSO and TSO: a
//! container's 64 KB TCP segments cross the switch whole.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use flowtable::PortId;
use xvs_sys::SyscallError;
use xvs_sys::bpf::{ProgError, TcxLink, load_sched_cls};

use crate::fastpath::{FastPathMaps, tc_program};

/// An attached tc hook. Dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct TcHook {
    /// The program the link runs.
    prog: OwnedFd,
    link: TcxLink,
    /// Where misses go: the upcall device's near end, and its number of queues.
    upcall: (u32, u32),
    /// An adopted link still runs its predecessor's program.
    swap_pending: bool,
}

impl TcHook {
    /// Loads port `port`'s program (the fast path's with `fast`) and attaches it at the tcx
    /// ingress of `ifindex`. From then on the interface's frames go to xvs.
    ///
    /// # Errors
    /// The verifier refuses the program or tcx is refused.
    pub(crate) fn attach(
        port: PortId,
        ifindex: u32,
        ifname: &str,
        upcall: (u32, u32),
        fast: Option<&FastPathMaps>,
    ) -> Result<TcHook, ProgError> {
        let prog = load_sched_cls(&tc_program(fast, port, upcall.0, upcall.1), "xvs_port_tc")?;
        let link = TcxLink::attach(prog.as_fd(), ifindex, ifname)?;
        Ok(TcHook {
            prog,
            link,
            upcall,
            swap_pending: false,
        })
    }

    /// Takes over `link`, a predecessor's attachment at the interface's tcx ingress, which
    /// keeps running the predecessor's program until [`TcHook::finish_adoption`] swaps port
    /// `port`'s onto it: the interface is never without a program.
    ///
    /// # Errors
    /// The verifier refuses the program.
    pub(crate) fn adopt(
        link: TcxLink,
        port: PortId,
        upcall: (u32, u32),
        fast: Option<&FastPathMaps>,
    ) -> Result<TcHook, ProgError> {
        let prog = load_sched_cls(&tc_program(fast, port, upcall.0, upcall.1), "xvs_port_tc")?;
        Ok(TcHook {
            prog,
            link,
            upcall,
            swap_pending: true,
        })
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

    pub(crate) fn pin(&self, path: &Path) -> Result<(), SyscallError> {
        self.link.pin(path)
    }

    pub(crate) fn set_fast_path(
        &mut self,
        port: PortId,
        fast: Option<&FastPathMaps>,
    ) -> Result<(), ProgError> {
        let (ifindex, queues) = self.upcall;
        let new = load_sched_cls(&tc_program(fast, port, ifindex, queues), "xvs_port_tc")?;
        if !self.swap_pending {
            self.link.replace(new.as_fd()).map_err(ProgError::Replace)?;
        }
        self.prog = new;
        Ok(())
    }
}
