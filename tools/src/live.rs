//! Sending with XDP live frames: `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`
//! (Linux 5.18) runs [`crate::program::live_tx`] `repeat` times on pages of a page pool that
//! start as a copy of the template frame, and transmits each frame the program returns
//! `XDP_TX` for out of the interface named as the run's ingress, in batches.
//!
//! No frame crosses into or out of user space: that is what makes it several times faster
//! than AF_XDP in copy mode. For a veth, the frames arrive only if the peer has an XDP program
//! attached (or GRO enabled); otherwise the kernel drops them, and the sending veth's
//! `tx_dropped` grows.
//!
//! Each test run pays a fixed cost of some 15 to 30 ms (measured on Linux 6.18: a run of 64
//! frames takes as long as one of 10 000, while a run of a single frame takes microseconds),
//! so a send is one run as long as the whole send: the program paces itself against the
//! clock when there is a target rate, and the run is ended by a signal to the sending thread
//! (see [`crate::send`]). The sending thread spins on its CPU for the whole send, also when
//! paced; AF_XDP mode sleeps between batches instead.

use std::os::fd::{AsFd, OwnedFd};

use xvs_sys::bpf::abi::xdp_md;
use xvs_sys::bpf::{self, Map, MapType};
use xvs_sys::{SyscallError, os};

use crate::error::Error;
use crate::pace::Rate;
use crate::packet::{FCS_LEN, Flows, FrameSpec, SizeRange};
use crate::program::{self, LivePlan, PACE_SHIFT, state};

/// The kernel's limit on `batch_size` (`TEST_XDP_MAX_BATCH`).
pub const MAX_BATCH: u32 = 256;

/// Why a run of the program stopped short.
#[derive(Debug)]
pub enum RunError {
    /// A signal came (Ctrl-C): the frames sent so far are in the counters.
    Interrupted,
    /// The kernel does not know live frames (or refuses them for this device).
    Unsupported(SyscallError),
    /// Anything else.
    Failed(Error),
}

/// A loaded live-frames program, its state, and the template it starts pages from.
#[derive(Debug)]
pub struct LiveSender {
    prog: OwnedFd,
    state: Map,
    template: Vec<u8>,
    ctx: [u8; 24],
    batch: u32,
}

impl LiveSender {
    /// Loads the program that sends `flows` × `sizes` frames of `spec` out of `ifindex` at
    /// `rate`, in batches of `batch` (1..=256).
    ///
    /// # Errors
    /// Creating the state map or loading the program fails (not root, or a bug of ours that
    /// the verifier caught).
    pub fn new(
        spec: FrameSpec,
        flows: Flows,
        sizes: SizeRange,
        ifindex: u32,
        batch: u32,
        rate: Rate,
    ) -> Result<LiveSender, Error> {
        let mut template = vec![0; sizes.max_buffer_len()];
        spec.write(&mut template, flows, 0, None);
        let plan = LivePlan {
            spec,
            flows,
            sizes,
            sums: spec.live_sums(&template, flows.varies_address(), sizes.count() > 1),
            interval: match rate {
                Rate::Max => None,
                Rate::Pps(pps) => Some(program::pace_interval(pps)),
            },
        };
        let state = Map::create(MapType::Array, 4, state::LEN, 1, 0, "pktgen_live")
            .map_err(Error::sys("creating the live-frames state map"))?;
        let insns = program::live_tx(&plan, state.as_fd());
        // Not attached anywhere: the device name only words attach errors.
        let prog = bpf::load_xdp(&insns, "pktgen_live").map_err(Error::program(""))?;

        // The xdp_md the run starts from: the whole buffer, arriving on queue 0 of the device.
        let mut ctx = [0u8; 24];
        ctx[xdp_md::DATA_END as usize..][..4]
            .copy_from_slice(&(template.len() as u32).to_ne_bytes());
        ctx[xdp_md::INGRESS_IFINDEX as usize..][..4].copy_from_slice(&ifindex.to_ne_bytes());
        Ok(LiveSender {
            prog,
            state,
            template,
            ctx,
            batch: batch.clamp(1, MAX_BATCH),
        })
    }

    /// Starts the pacing clock now: the first frame is due at once.
    ///
    /// # Errors
    /// Writing the state map fails.
    pub fn start_clock(&self) -> Result<(), Error> {
        let mut value = vec![0u8; self.state.value_len()];
        self.state
            .lookup(&0u32.to_ne_bytes(), &mut value)
            .map_err(Error::sys("reading the live-frames state"))?;
        let at = state::NEXT as usize;
        value[at..at + 8].copy_from_slice(&(os::monotonic_ns() << PACE_SHIFT).to_ne_bytes());
        self.state
            .update(&0u32.to_ne_bytes(), &value, 0)
            .map_err(Error::sys("writing the live-frames state"))
    }

    /// Runs the program `repeat` times: sends `repeat` frames, or fewer when paced (a run
    /// before a frame is due sends nothing).
    ///
    /// # Errors
    /// See [`RunError`].
    pub fn run(&self, repeat: u32) -> Result<(), RunError> {
        match bpf::prog_test_run(
            self.prog.as_fd(),
            &self.template,
            &self.ctx,
            repeat.max(1),
            bpf::F_TEST_XDP_LIVE_FRAMES,
            self.batch,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(libc::EINTR) => Err(RunError::Interrupted),
            // EINVAL for an unknown flag; ENOTSUPP (524) or EOPNOTSUPP where the program type
            // cannot be test-run live.
            Err(e) if matches!(e.errno(), Some(libc::EINVAL | libc::EOPNOTSUPP | 524)) => {
                Err(RunError::Unsupported(e))
            }
            Err(e) => Err(RunError::Failed(Error::sys(
                "running the live-frames program",
            )(e))),
        }
    }

    /// Frames sent and their bytes (FCS included).
    ///
    /// # Errors
    /// Reading the state map fails.
    pub fn totals(&self) -> Result<(u64, u64), Error> {
        let mut value = vec![0u8; self.state.value_len()];
        self.state
            .lookup(&0u32.to_ne_bytes(), &mut value)
            .map_err(Error::sys("reading the live-frames counters"))?;
        let field = |at: i16| {
            let at = at as usize;
            u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"))
        };
        let packets = field(state::PACKETS);
        Ok((packets, field(state::BYTES) + packets * FCS_LEN as u64))
    }
}
