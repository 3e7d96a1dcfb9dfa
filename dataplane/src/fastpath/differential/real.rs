//! The real programs under `BPF_PROG_TEST_RUN`: each port's XDP and tc program, loaded once
//! over one set of maps, run on a frame with the one entry the model used in the flow map,
//! and held to the model's outcome (return code and the packet left).

use std::os::fd::{AsFd, OwnedFd};

use flowtable::PortId;
use xvs_sys::bpf::abi::{action, tc_action};
use xvs_sys::bpf::{XskMap, load_sched_cls, load_xdp, prog_test_run_output};

use super::super::abi::{KernelKey, KernelValue};
use super::super::maps::FastPathMaps;
use super::super::model::{self, Ingress, Outcome};
use super::super::program::program;
use super::super::tc_program::tc_program;
use crate::hook::HookKind;

/// Ports of the worlds: 1 to this.
const PORTS: PortId = 4;

/// The programs of ports 1 to [`PORTS`] and the maps they share.
#[derive(Debug)]
pub(super) struct RealKernel {
    maps: FastPathMaps,
    /// Empty: a miss's redirect to a socket finds none and passes.
    _xsks: XskMap,
    /// By port: without and with checksum finishing.
    xdp: Vec<[OwnedFd; 2]>,
    tc: Vec<OwnedFd>,
    /// A device for the DEVMAP (the redirect is never carried out).
    lo: u32,
}

impl RealKernel {
    pub(super) fn new() -> Result<RealKernel, String> {
        let maps = FastPathMaps::new().map_err(|e| e.to_string())?;
        let xsks = XskMap::new(1, "diff_xsks").map_err(|e| e.to_string())?;
        let mut xdp = Vec::new();
        let mut tc = Vec::new();
        for port in 1..=PORTS {
            let load = |finish| {
                load_xdp(&program(&maps, xsks.as_fd(), port, finish), "diff_xdp")
                    .map_err(|e| e.to_string())
            };
            xdp.push([load(false)?, load(true)?]);
            tc.push(
                load_sched_cls(&tc_program(Some(&maps), port, 1, 1), "diff_tc")
                    .map_err(|e| e.to_string())?,
            );
        }
        let lo = xvs_sys::netdev::if_nametoindex("lo").map_err(|e| e.to_string())?;
        Ok(RealKernel {
            maps,
            _xsks: xsks,
            xdp,
            tc,
            lo,
        })
    }

    /// Runs the program of the frame's port with `entry` alone in the flow map, and holds
    /// what it did to `expected`, the model's outcome. A tc program meets the frame as an
    /// skb built from its bytes, with no tag held apart: tagged frames are left out.
    pub(super) fn compare(
        &self,
        ingress: &Ingress<'_>,
        entry: Option<(KernelKey, KernelValue)>,
        expected: &Outcome,
    ) -> Result<(), String> {
        let frame = ingress.frame;
        let tagged =
            frame.len() >= 14 && matches!([frame[12], frame[13]], [0x81, 0x00] | [0x88, 0xa8]);
        if ingress.hook == HookKind::Tc && tagged {
            return Ok(());
        }
        for port in 1..=PORTS {
            self.maps.remove_target(port);
        }
        if let Outcome::Redirect { slot, .. } = expected
            && ingress.hook == HookKind::Xdp
        {
            self.maps
                .add_target(*slot as PortId, self.lo)
                .map_err(|e| format!("DEVMAP: {e}"))?;
        }
        if let Some((key, value)) = entry {
            self.maps
                .insert(&key, &value)
                .map_err(|e| format!("flow map: {e}"))?;
        }
        let port = usize::from(ingress.port) - 1;
        let prog = match ingress.hook {
            HookKind::Xdp => self.xdp[port][usize::from(ingress.finish_checksums)].as_fd(),
            HookKind::Tc => self.tc[port].as_fd(),
        };
        let mut out = vec![0u8; frame.len() + 64];
        let run = prog_test_run_output(prog, frame, &mut out);
        if let Some((key, _)) = entry {
            self.maps.remove(&key);
        }
        let (retval, len) = run.map_err(|e| format!("test run: {e}"))?;
        out.truncate(len);
        let agrees = match (ingress.hook, expected) {
            (HookKind::Xdp, Outcome::Up(bytes)) => {
                retval == action::XDP_PASS as u32 && out == *bytes
            }
            (HookKind::Xdp, Outcome::Drop) => retval == action::XDP_DROP as u32,
            (HookKind::Xdp, Outcome::Redirect { frame, .. }) => {
                retval == action::XDP_REDIRECT as u32 && out == *frame
            }
            (HookKind::Tc, Outcome::Up(bytes)) => {
                retval == tc_action::TC_ACT_REDIRECT as u32 && out == *bytes
            }
            (HookKind::Tc, Outcome::Drop) => retval == tc_action::TC_ACT_SHOT as u32,
            // The tag a tc program pushes is held apart: compare the data.
            (HookKind::Tc, Outcome::Redirect { frame, .. }) => {
                retval == tc_action::TC_ACT_REDIRECT as u32 && out == model::skb_data(frame)
            }
        };
        if agrees {
            Ok(())
        } else {
            let modelled = match expected {
                Outcome::Up(bytes) => bytes.clone(),
                Outcome::Redirect { frame, .. } if ingress.hook == HookKind::Tc => {
                    model::skb_data(frame)
                }
                Outcome::Redirect { frame, .. } => frame.clone(),
                Outcome::Drop => Vec::new(),
            };
            Err(format!(
                "the real {:?} program returns {retval}, the model says {}; {} (entry {entry:x?})",
                ingress.hook,
                match expected {
                    Outcome::Up(_) => "up",
                    Outcome::Drop => "drop",
                    Outcome::Redirect { .. } => "redirect",
                },
                super::difference("the real packet", &out, "the model's", &modelled),
            ))
        }
    }
}
