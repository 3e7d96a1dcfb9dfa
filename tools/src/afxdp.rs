//! AF_XDP in copy mode: the sender of the fallback and latency modes, and the receiver that
//! inspects every frame (`count --inspect`, `count --latency`).
//!
//! Copy mode works on every interface; the kernel copies each frame between the UMEM and an
//! skb, which caps it at a few million frames per second, far below live frames, but lets user
//! space write each frame (time stamps, sequence numbers) and read each one.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use xvs_sys::bpf::{self, XdpLink, XdpMode, XskMap};
use xvs_sys::frame::{Frame, Packet, UmemArea};
use xvs_sys::xsk::{BindMode, KickError, RingSizes, XskRings, XskSocket};
use xvs_sys::{netdev, os};

use crate::error::Error;
use crate::pace::Pacer;
use crate::packet::{FCS_LEN, Flows, FrameSpec, SizeRange, Stamp};
use crate::report::{Meter, Sample};

/// Bytes of a UMEM chunk: room for the largest frame.
const CHUNK: u32 = 2048;
/// Frames of a sender's UMEM, equal to its TX ring size: while we hold a free frame, the TX
/// ring has a free slot, so a batch never waits half-queued.
const TX_FRAMES: u32 = 2048;
/// Frames of each receive queue's UMEM, all lent to the kernel through the fill ring.
const RX_FRAMES: u32 = 4096;
/// Frames written and queued at a time.
const TX_BATCH: u64 = 64;
/// Frames taken from an RX ring at a time.
const RX_BATCH: u32 = 64;
/// How long opening a socket retries while the queue is busy.
const BIND_RETRY: Duration = Duration::from_secs(2);
/// How long the sender waits at the end for the kernel to finish what was queued.
const DRAIN: Duration = Duration::from_secs(1);

/// An AF_XDP socket in copy mode with its own UMEM and the frames we hold.
#[derive(Debug)]
struct XskPort {
    rings: XskRings,
    socket: XskSocket,
    free: Vec<Frame>,
    frames: u32,
    area: Arc<UmemArea>,
}

impl XskPort {
    fn open(ifindex: u32, queue: u32, umem_id: u16, frames: u32) -> Result<XskPort, Error> {
        let (area, free) =
            UmemArea::new(umem_id, frames, CHUNK).map_err(Error::sys("mapping a UMEM"))?;
        let area = Arc::new(area);
        let sizes = RingSizes {
            rx_tx: frames,
            fill_comp: frames,
        };
        // The kernel releases a closed socket's hold on the queue a little later: a socket
        // opened right after another closed (a counter started again) finds it busy for a
        // moment.
        let deadline = Instant::now() + BIND_RETRY;
        let (socket, rings) = loop {
            match XskSocket::open(&area, 1, ifindex, queue, sizes, BindMode::Copy, None) {
                Err(e) if e.errno() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                result => break result.map_err(Error::sys("opening an AF_XDP socket"))?,
            }
        };
        Ok(XskPort {
            rings,
            socket,
            free,
            frames,
            area,
        })
    }

    fn index(&self, frame: &Frame) -> usize {
        (frame.addr() / u64::from(CHUNK)) as usize
    }
}

/// What the sender writes: headers, flows, sizes, and whether to stamp frames.
#[derive(Debug, Clone, Copy)]
pub struct TxPlan {
    /// Headers and addresses.
    pub spec: FrameSpec,
    /// The flows cycled through.
    pub flows: Flows,
    /// The sizes cycled through.
    pub sizes: SizeRange,
    /// Whether each frame carries a [`Stamp`].
    pub stamped: bool,
}

/// Frames the kernel finished sending, and their bytes (FCS included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxTotals {
    /// Frames.
    pub packets: u64,
    /// Bytes, FCS included.
    pub bytes: u64,
}

/// The sending side: one socket on queue 0 of the interface.
#[derive(Debug)]
pub struct XskSender {
    port: XskPort,
    /// Length (FCS included) of the frame last written into each chunk.
    lens: Vec<u32>,
    totals: TxTotals,
    dev: String,
}

impl XskSender {
    /// Opens a copy-mode socket on queue 0 of `dev`.
    ///
    /// # Errors
    /// The UMEM or the socket cannot be set up (not root; another socket holds the queue).
    pub fn open(dev: &str, ifindex: u32) -> Result<XskSender, Error> {
        let port = XskPort::open(ifindex, 0, 1, TX_FRAMES)?;
        Ok(XskSender {
            lens: vec![0; TX_FRAMES as usize],
            port,
            totals: TxTotals::default(),
            dev: dev.to_owned(),
        })
    }

    /// Takes back the frames the kernel finished with.
    fn reap(&mut self) {
        let before = self.port.free.len();
        let n = self
            .port
            .rings
            .completion
            .reap(&mut self.port.free, self.port.frames);
        for frame in &self.port.free[before..] {
            self.totals.bytes += u64::from(self.lens[self.port.index(frame)]);
        }
        self.totals.packets += u64::from(n);
    }

    /// Asks the kernel to send what is queued: copy mode takes 32 frames per call.
    fn kick(&mut self) -> Result<(), Error> {
        for _ in 0..8 {
            if self.port.rings.tx.outstanding() == 0 {
                break;
            }
            match self.port.rings.kick_tx() {
                Ok(()) | Err(KickError::Again) | Err(KickError::Other(_)) => {}
                Err(KickError::Down(_)) => return Err(Error::DeviceDown(self.dev.clone())),
            }
        }
        Ok(())
    }

    /// Sends frames of `plan` paced by `pacer` until `end` or until `stop` is set, reporting
    /// progress every second; returns whether `stop` ended it, and how long it sent (without
    /// the wait at the end for the kernel to finish the frames queued by then).
    ///
    /// # Errors
    /// The interface goes down.
    pub fn run(
        &mut self,
        plan: &TxPlan,
        pacer: &Pacer,
        end: Instant,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&Sample),
    ) -> Result<(bool, Duration), Error> {
        let start = Instant::now();
        let mut meter = Meter::new(start, Duration::from_secs(1));
        let mut batch: Vec<Packet> = Vec::with_capacity(TX_BATCH as usize);
        let mut queued = 0u64;
        let interrupted = loop {
            if stop.load(Ordering::Relaxed) {
                break true;
            }
            let now = Instant::now();
            if now >= end {
                break false;
            }
            self.reap();
            if let Some(sample) = meter.tick(now, self.totals.packets, self.totals.bytes) {
                progress(&sample);
            }
            let budget = match pacer.due(now, queued) {
                None => TX_BATCH,
                Some(0) => {
                    self.kick()?;
                    let wake = pacer
                        .when(queued, 1)
                        .min(end)
                        .min(now + Duration::from_millis(10));
                    std::thread::sleep(wake.saturating_duration_since(Instant::now()));
                    continue;
                }
                Some(due) => due.min(TX_BATCH),
            };
            let n = budget.min(self.port.free.len() as u64);
            if n == 0 {
                self.kick()?;
                std::thread::yield_now();
                continue;
            }
            for _ in 0..n {
                let mut frame = self.port.free.pop().expect("n <= free frames");
                // The frame's number in the run picks its size and flow and is its sequence.
                let seq = queued + batch.len() as u64;
                let len = plan.sizes.buffer_len(seq);
                let stamp = plan.stamped.then(|| Stamp {
                    seq,
                    sent_ns: os::monotonic_ns(),
                });
                let flow = (seq % u64::from(plan.flows.count())) as u32;
                plan.spec.write(
                    &mut self.port.area.bytes_mut(&mut frame)[..len],
                    plan.flows,
                    flow,
                    stamp,
                );
                let index = self.port.index(&frame);
                self.lens[index] = (len + FCS_LEN) as u32;
                batch.push(Packet {
                    frame,
                    offset: 0,
                    len: len as u32,
                });
            }
            queued += u64::from(self.port.rings.tx.send(&mut batch));
            debug_assert!(batch.is_empty(), "the TX ring has a slot per frame");
            self.kick()?;
        };
        let sending = start.elapsed();
        // Let the kernel finish what is queued, so that the totals count it.
        let deadline = Instant::now() + DRAIN;
        while self.port.free.len() < self.port.frames as usize && Instant::now() < deadline {
            self.kick()?;
            self.reap();
            std::thread::sleep(Duration::from_micros(100));
        }
        Ok((interrupted, sending))
    }

    /// Frames the kernel finished sending.
    pub fn totals(&self) -> TxTotals {
        self.totals
    }
}

/// The receiving side: a socket per receive queue, and the XDP program that steers every
/// frame to the socket of its queue. Dropping it detaches the program first.
#[derive(Debug)]
pub struct XskReceiver {
    link: XdpLink,
    _prog: OwnedFd,
    _xskmap: XskMap,
    ports: Vec<XskPort>,
    ready: Vec<(bool, bool)>,
    packets: Vec<Packet>,
}

impl XskReceiver {
    /// Opens a copy-mode socket on each receive queue of `dev` and attaches the program that
    /// steers frames to them.
    ///
    /// # Errors
    /// A socket cannot be set up, or the program cannot be attached (another is there).
    pub fn open(dev: &str, ifindex: u32) -> Result<XskReceiver, Error> {
        let queues = netdev::channels(dev)
            .map(|c| c.rx_count.max(c.combined_count))
            .unwrap_or(1)
            .max(1);
        let mut ports = Vec::new();
        for queue in 0..queues {
            let mut port = XskPort::open(ifindex, queue, queue as u16 + 1, RX_FRAMES)?;
            port.rings.fill.fill(&mut port.free, RX_FRAMES);
            ports.push(port);
        }
        let xskmap = XskMap::new(queues, "pktgen_xsk").map_err(Error::sys("creating an XSKMAP"))?;
        for (queue, port) in ports.iter().enumerate() {
            xskmap
                .set(queue as u32, port.socket.as_fd())
                .map_err(Error::sys("filling the XSKMAP"))?;
        }
        let prog = bpf::load_xdp(&bpf::redirect_to_xsk(xskmap.as_fd()), "pktgen_xsk")
            .map_err(Error::program(dev))?;
        let link =
            XdpLink::attach(prog.as_fd(), ifindex, dev, None).map_err(Error::program(dev))?;
        Ok(XskReceiver {
            link,
            _prog: prog,
            _xskmap: xskmap,
            ready: Vec::new(),
            packets: Vec::with_capacity(RX_BATCH as usize),
            ports,
        })
    }

    /// Where the program runs.
    pub fn mode(&self) -> XdpMode {
        self.link.mode()
    }

    /// Waits up to `timeout_ms` for frames, then hands each received frame (FCS excluded) to
    /// `handle` with the time it was taken off the ring; returns how many.
    ///
    /// # Errors
    /// `poll` fails.
    pub fn poll(
        &mut self,
        timeout_ms: i32,
        handle: &mut dyn FnMut(&[u8], u64),
    ) -> Result<u64, Error> {
        let fds: Vec<BorrowedFd<'_>> = self.ports.iter().map(|p| p.rings.as_fd()).collect();
        os::poll_readable(&fds, &mut self.ready, timeout_ms)
            .map_err(Error::sys("waiting for frames"))?;
        drop(fds);
        let mut received = 0;
        for port in &mut self.ports {
            loop {
                let n = port.rings.rx.receive(&mut self.packets, RX_BATCH);
                if n == 0 {
                    break;
                }
                let now = os::monotonic_ns();
                for packet in self.packets.drain(..) {
                    let start = packet.offset as usize;
                    let bytes = port.area.bytes(&packet.frame);
                    handle(&bytes[start..start + packet.len as usize], now);
                    port.free.push(packet.frame);
                }
                port.rings.fill.fill(&mut port.free, n);
                received += u64::from(n);
            }
        }
        Ok(received)
    }
}
