//! Poll-mode workers.
//!
//! A worker is a thread, pinned to a CPU if asked, that owns a set of queues (each a
//! [`QueueBackend`]: an AF_XDP socket today) and loops: receive a batch from each queue, decide
//! each packet through its [`Pipeline`], queue it on the TX batch of its output queue, then send
//! every batch, take back transmitted frames and refill the receive rings. It never blocks on
//! the control thread: commands arrive on a channel it polls between iterations, and when there
//! is no traffic for a while it sleeps in `poll(2)` on its queues and an eventfd.
//!
//! A packet whose output port has no queue in this worker (the port's queues belong to other
//! workers) is handed to one of those workers through a lock-free queue. All queues share a
//! UMEM per mode, so a hand-off moves a descriptor, not bytes.
//!
//! The rooms: [`command`] (what the control thread asks), [`execute`] (carrying out a
//! decision: edits, copies, outputs), [`tx`] (sending, completions, refilling).

use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering, fence};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use flowtable::key::{Layout, finish_partial_checksum};
use flowtable::wire::upcall;
use flowtable::{Config, DropReason, Event, FlowKey, Pipeline, PortId};
use xvs_sys::frame::{Packet, UmemArea};
use xvs_sys::os::{self, EventFd};

use crate::backend::{Ingress, QueueBackend};
use crate::counters::{DropCause, MAX_PORTS, WorkerCounters};
use crate::fastpath::{FastPathMaps, Offloader};
use crate::umem::{FreeList, Umem};

mod command;
mod execute;
#[cfg(test)]
mod tests;
mod tx;

pub(crate) use command::{Command, TxMap, WorkerEvent};
pub use command::{FdbEntry, NeighborEntry, TraceReport};
use execute::Target;

/// Packets taken from one queue per iteration.
const RX_BATCH: u32 = 64;
/// Empty iterations before a worker goes to sleep.
const SPIN_LOOPS: u32 = 20_000;
/// Longest sleep: periodic work (aging, completions) still happens this often, and the loop
/// count, which a watchdog reads as the worker's sign of life, advances even when idle.
const SLEEP_MS: i32 = 100;
/// Room in front of a copied frame, as the kernel leaves for received ones.
pub(crate) const FRAME_HEADROOM: u32 = 256;
/// Capacity of the hand-off queue of each worker.
const HANDOFF_QUEUE: usize = 4096;
/// Capacity of the MAC event queue of each worker.
const MAC_EVENT_QUEUE: usize = 4096;

/// A queue as the worker that serves it owns it.
#[derive(Debug)]
pub(crate) struct Queue {
    /// The port the queue belongs to (for a tagged queue: the shared device's own number,
    /// which its counters and events name, and for which it does not send).
    pub(crate) port: PortId,
    /// The port's queue number.
    pub(crate) queue: u32,
    /// Where its received frames came in.
    pub(crate) ingress: Ingress,
    /// Whether the worker sends the port's frames on it.
    pub(crate) sends: bool,
    pub(crate) backend: Box<dyn QueueBackend>,
    /// Finish partial TCP/UDP checksums of frames received here (veth with offloads).
    pub(crate) finish_checksums: bool,
    /// Index of the queue's UMEM in the worker's free lists.
    umem: usize,
    tx_batch: Vec<Packet>,
    /// The device went away: stop using the queue until the control thread removes it.
    dead: bool,
}

impl Queue {
    pub(crate) fn new(
        port: PortId,
        queue: u32,
        ingress: Ingress,
        sends: bool,
        backend: Box<dyn QueueBackend>,
        finish_checksums: bool,
        umem: u16,
    ) -> Self {
        Queue {
            port,
            queue,
            ingress,
            sends,
            backend,
            finish_checksums,
            umem: usize::from(umem),
            tx_batch: Vec::with_capacity(RX_BATCH as usize * 4),
            dead: false,
        }
    }
}

/// What the control thread and the other workers share with a worker.
#[derive(Debug)]
pub(crate) struct WorkerShared {
    pub(crate) id: usize,
    pub(crate) wake: EventFd,
    pub(crate) sleeping: AtomicBool,
    pub(crate) handoff: ArrayQueue<(Packet, PortId)>,
    pub(crate) mac_events: ArrayQueue<Event>,
    pub(crate) counters: WorkerCounters,
    /// The kernel thread id, once running (for CPU accounting).
    pub(crate) tid: AtomicI32,
}

impl WorkerShared {
    pub(crate) fn new(id: usize) -> Result<WorkerShared, xvs_sys::SyscallError> {
        Ok(WorkerShared {
            id,
            wake: EventFd::new()?,
            sleeping: AtomicBool::new(false),
            handoff: ArrayQueue::new(HANDOFF_QUEUE),
            mac_events: ArrayQueue::new(MAC_EVENT_QUEUE),
            counters: WorkerCounters::default(),
            tid: AtomicI32::new(0),
        })
    }

    /// Wakes the worker if it sleeps. The caller published its work before calling.
    pub(crate) fn nudge(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake.notify();
        }
    }
}

/// How a worker is set up.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSetup {
    pub(crate) cpu: Option<usize>,
    pub(crate) busy_poll: bool,
    pub(crate) cache_capacity: usize,
    /// The zero of the pipeline's clock (shared by every worker and the control thread).
    pub(crate) clock_zero: Instant,
    pub(crate) umems: Vec<Arc<Umem>>,
    pub(crate) fill_target: Arc<AtomicU32>,
    /// Most frames this worker lends to all its receive rings together.
    pub(crate) fill_budget: u32,
    /// The fast path's maps, if it is on.
    pub(crate) fast_path: Option<Arc<FastPathMaps>>,
    /// The connection tracker the workers share (`None`: the pipeline's own).
    pub(crate) conntrack: Option<crate::conntrack::SharedConntrack>,
}

/// The worker's datapath: its queues, frames and hand-off, everything but the pipeline, so
/// that a decision borrowed from the pipeline can be carried out against it.
struct Datapath {
    areas: Vec<Arc<UmemArea>>,
    free: Vec<FreeList>,
    queues: Vec<Queue>,
    /// Port → index of the local queue to send on.
    tx_local: Vec<Option<u16>>,
    /// Port → the worker to hand off to when there is no local queue.
    tx_remote: Vec<Option<usize>>,
    peers: Vec<Arc<WorkerShared>>,
    shared: Arc<WorkerShared>,
    /// Peers we handed packets to in this iteration (bit per worker).
    nudge_peers: u64,
    /// Scratch for expanding a decision into outputs and edits.
    targets: Vec<Target>,
    events: Sender<WorkerEvent>,
    /// Ports the loop guard blocked, with the end of each block: floods leave them out.
    blocked: Vec<(PortId, u64)>,
}

impl Datapath {
    /// The flow key of a received packet; with `finish` (a queue whose frames may carry
    /// them), a TCP or UDP checksum the sender left partial for offload is finished first.
    /// Every step of a decision thus meets complete checksums, which the header rewrites
    /// update incrementally. `None` for a packet that does not parse.
    fn parse(
        &mut self,
        packet: &mut Packet,
        in_port: PortId,
        finish: bool,
    ) -> Option<(FlowKey, Layout)> {
        let area = &self.areas[usize::from(packet.frame.umem())];
        let start = packet.offset as usize;
        let end = start + packet.len as usize;
        let frame = area.bytes_mut(&mut packet.frame).get_mut(start..end)?;
        let (key, layout) = FlowKey::extract(frame, in_port).ok()?;
        if finish {
            finish_partial_checksum(frame, &key, &layout);
        }
        Some((key, layout))
    }
}

/// A worker thread's state.
pub(crate) struct Worker {
    setup: WorkerSetup,
    pipeline: Pipeline,
    config: Arc<Config>,
    dp: Datapath,
    offloader: Option<Offloader>,
    commands: Receiver<Command>,
    rx_batch: Vec<Packet>,
    idle_loops: u32,
    loops: u64,
    /// When (pipeline clock) the last iteration began, if it moved packets: its time is
    /// counted as busy when the next one begins.
    busy_since: Option<u64>,
}

impl Worker {
    pub(crate) fn new(
        setup: WorkerSetup,
        shared: Arc<WorkerShared>,
        peers: Vec<Arc<WorkerShared>>,
        config: Arc<Config>,
        commands: Receiver<Command>,
        events: Sender<WorkerEvent>,
    ) -> Worker {
        let free = setup
            .umems
            .iter()
            .map(|u| FreeList::new(u.clone(), 256, 1024))
            .collect();
        let areas = setup.umems.iter().map(|u| u.area().clone()).collect();
        let mut pipeline = Pipeline::new(config.clone(), setup.cache_capacity);
        if let Some(table) = &setup.conntrack {
            pipeline.set_conntrack(Box::new(table.clone()));
        }
        let offloader = setup.fast_path.clone().map(|maps| {
            pipeline.track_invalidations(true);
            let zero =
                os::monotonic_ns().saturating_sub(setup.clock_zero.elapsed().as_nanos() as u64);
            Offloader::new(maps, zero)
        });
        Worker {
            pipeline,
            offloader,
            config,
            dp: Datapath {
                areas,
                free,
                queues: Vec::new(),
                tx_local: vec![None; MAX_PORTS],
                tx_remote: vec![None; MAX_PORTS],
                peers,
                shared,
                nudge_peers: 0,
                targets: Vec::new(),
                events,
                blocked: Vec::new(),
            },
            setup,
            commands,
            rx_batch: Vec::with_capacity(RX_BATCH as usize),
            idle_loops: 0,
            loops: 0,
            busy_since: None,
        }
    }

    /// Nanoseconds on the pipeline's clock.
    fn now(&self) -> u64 {
        self.setup.clock_zero.elapsed().as_nanos() as u64
    }

    /// The worker's loop; returns when told to stop.
    pub(crate) fn run(mut self) {
        self.dp.shared.tid.store(os::gettid(), Ordering::Relaxed);
        if let Some(cpu) = self.setup.cpu {
            match os::pin_current_thread(cpu) {
                Ok(()) => tracing::info!(worker = self.dp.shared.id, cpu, "worker pinned"),
                Err(e) => tracing::warn!(worker = self.dp.shared.id, cpu, "cannot pin worker: {e}"),
            }
        }
        while self.step().is_continue() {}
        self.publish_stats();
    }

    /// One iteration: commands, then every queue's batch, hand-offs, sending, completions,
    /// refills and the periodic work; sleeps when there was nothing to do for a while.
    pub(crate) fn step(&mut self) -> ControlFlow<()> {
        self.handle_commands()?;
        let now = self.now();
        if let Some(start) = self.busy_since.take() {
            self.dp.shared.counters.busy_for(now.saturating_sub(start));
        }
        let mut work = 0;
        for i in 0..self.dp.queues.len() {
            work += self.receive(i, now);
        }
        work += self.receive_handoffs();
        if let Some(off) = &mut self.offloader {
            off.invalidate(&mut self.pipeline, &self.dp.shared.counters);
        }
        self.send_solicitations();
        self.dp.transmit();
        self.dp.reap();
        self.dp.refill(
            self.setup.fill_target.load(Ordering::Relaxed),
            self.setup.fill_budget,
        );
        self.exchange_mac_events();
        self.loops += 1;
        if self.loops.is_multiple_of(1024) {
            self.pipeline.tick(now);
            if let Some(off) = &mut self.offloader {
                off.sync_if_due(&mut self.pipeline, &self.dp.shared.counters, now);
                off.invalidate(&mut self.pipeline, &self.dp.shared.counters);
            }
            self.publish_stats();
        }
        self.dp.shared.counters.loop_done(work > 0);
        if work == 0 {
            self.idle(now);
        } else {
            self.idle_loops = 0;
            self.busy_since = Some(now);
        }
        ControlFlow::Continue(())
    }

    fn publish_stats(&self) {
        let counters = &self.dp.shared.counters;
        counters.set_cache(self.pipeline.stats(), self.pipeline.cache_len());
        counters.set_tables(
            self.pipeline.mac_table().len(),
            self.offloader.as_ref().map_or(0, Offloader::installed),
        );
    }

    /// Receives and forwards one batch from queue `i`; returns how many packets.
    fn receive(&mut self, i: usize, now: u64) -> u32 {
        let queue = &mut self.dp.queues[i];
        if queue.dead || queue.ingress == Ingress::None {
            return 0;
        }
        let mut batch = std::mem::take(&mut self.rx_batch);
        let n = queue.backend.receive(&mut batch, RX_BATCH);
        if n == 0 {
            self.rx_batch = batch;
            return 0;
        }
        let (ingress, queue_port) = (queue.ingress, queue.port);
        let finish = queue.finish_checksums;
        // The kernel wrote these frames from another CPU: start pulling them in now.
        for p in &batch {
            self.dp.areas[usize::from(p.frame.umem())].prefetch(&p.frame, p.offset);
        }
        match ingress {
            Ingress::Port(port) => {
                let bytes: u64 = batch.iter().map(|p| u64::from(p.len)).sum();
                self.dp.shared.counters.rx(port, u64::from(n), bytes);
                for packet in batch.drain(..) {
                    self.forward(packet, port, finish, now);
                }
            }
            Ingress::None => unreachable!("checked above"),
            Ingress::Tagged => {
                for mut packet in batch.drain(..) {
                    let Some(port) = self.dp.untag(&mut packet) else {
                        let cause = DropCause::Pipeline(DropReason::Malformed);
                        self.dp.drop(queue_port, cause, packet);
                        continue;
                    };
                    self.dp.shared.counters.rx(port, 1, u64::from(packet.len));
                    self.forward(packet, port, finish, now);
                }
            }
        }
        self.rx_batch = batch;
        n
    }

    fn forward(&mut self, mut packet: Packet, in_port: PortId, finish: bool, now: u64) {
        let Some((key, layout)) = self.dp.parse(&mut packet, in_port, finish) else {
            self.dp
                .drop(in_port, DropCause::Pipeline(DropReason::Malformed), packet);
            return;
        };
        if !self.dp.blocked.is_empty() {
            self.dp.blocked.retain(|&(_, until)| now < until);
        }
        let area = &self.dp.areas[usize::from(packet.frame.umem())];
        let start = packet.offset as usize;
        let frame = &area.bytes(&packet.frame)[start..start + packet.len as usize];
        let (decision, miss) = self.pipeline.decide_frame(frame, &key, &layout, now);
        if let (Some(off), Some(miss)) = (self.offloader.as_mut(), miss) {
            off.install(&key, decision, &miss, &self.config, now);
        }
        self.dp.execute(decision, &self.config, packet, in_port);
        for blocked in self.pipeline.take_blocked() {
            tracing::warn!(
                worker = self.dp.shared.id,
                port = blocked.port,
                seconds = blocked.until.saturating_sub(now) / 1_000_000_000,
                "a loop? broadcast or address moves coming in faster than the loop guard \
                 allows: the port is cut off for a while"
            );
            self.dp.blocked.push((blocked.port, blocked.until));
        }
    }

    /// Builds and sends the ARP requests and neighbor solicitations the pipeline asked for.
    fn send_solicitations(&mut self) {
        for solicitation in self.pipeline.take_solicitations() {
            self.dp.solicit(&solicitation, &self.config);
        }
    }

    fn receive_handoffs(&mut self) -> u32 {
        let mut n = 0;
        while n < RX_BATCH * 4 {
            let Some((packet, port)) = self.dp.shared.handoff.pop() else {
                break;
            };
            match self.dp.tx_local[usize::from(port)] {
                Some(s) => self.dp.enqueue_local(packet, port, usize::from(s)),
                None => self.dp.drop(port, DropCause::NoPort, packet),
            }
            n += 1;
        }
        n
    }

    fn exchange_mac_events(&mut self) {
        if self.dp.peers.len() > 1 {
            let me = self.dp.shared.id;
            for event in self.pipeline.take_events() {
                for peer in self.dp.peers.iter().filter(|p| p.id != me) {
                    if peer.mac_events.push(event).is_err() {
                        self.dp.shared.counters.mac_event_lost();
                    }
                }
            }
        } else {
            self.pipeline.take_events().for_each(drop);
        }
        while let Some(event) = self.dp.shared.mac_events.pop() {
            self.pipeline.apply_event(&event);
        }
    }

    fn idle(&mut self, now: u64) {
        self.idle_loops += 1;
        if self.setup.busy_poll || self.idle_loops < SPIN_LOOPS {
            return;
        }
        self.pipeline.tick(now);
        self.publish_stats();
        self.dp.top_up(self.setup.fill_budget);
        let shared = self.dp.shared.clone();
        shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if shared.handoff.is_empty() && shared.mac_events.is_empty() {
            let mut fds: Vec<BorrowedFd<'_>> = self
                .dp
                .queues
                .iter()
                .filter(|q| !q.dead)
                .map(|q| q.backend.poll_fd())
                .collect();
            fds.push(shared.wake.as_fd());
            let mut ready = Vec::with_capacity(fds.len());
            if let Err(e) = os::poll_readable(&fds, &mut ready, SLEEP_MS) {
                tracing::warn!("worker poll failed: {e}");
            }
            shared.counters.slept();
        }
        shared.sleeping.store(false, Ordering::SeqCst);
        shared.wake.drain();
        self.idle_loops = SPIN_LOOPS / 2;
    }
}

impl Datapath {
    /// Picks, for each port, the local queue to send on: the first live queue that sends for
    /// that port.
    fn reindex(&mut self) {
        self.tx_local.iter_mut().for_each(|t| *t = None);
        for (i, q) in self.queues.iter().enumerate() {
            let slot = &mut self.tx_local[usize::from(q.port)];
            if q.sends && slot.is_none() && !q.dead {
                *slot = Some(i as u16);
            }
        }
    }

    fn set_tx_map(&mut self, map: &TxMap) {
        let me = self.shared.id;
        for (port, remote) in self.tx_remote.iter_mut().enumerate() {
            *remote = map
                .owners
                .get(port)
                .and_then(|owners| owners.iter().copied().find(|&w| w != me));
        }
    }

    /// Takes out every queue of `port`, giving back the frames of their TX batches.
    fn remove_port(&mut self, port: PortId) -> Vec<Box<dyn QueueBackend>> {
        let mut backends = Vec::new();
        let mut kept = Vec::new();
        for mut q in self.queues.drain(..) {
            if q.port == port {
                let frames = q.tx_batch.drain(..).map(|p| p.frame);
                self.free[q.umem].frames.extend(frames);
                backends.push(q.backend);
            } else {
                kept.push(q);
            }
        }
        self.queues = kept;
        self.reindex();
        backends
    }

    /// Takes the upcall prefix off a frame of a shared queue; returns the port it names.
    fn untag(&mut self, packet: &mut Packet) -> Option<PortId> {
        let area = &self.areas[usize::from(packet.frame.umem())];
        let chunk = area.bytes_mut(&mut packet.frame);
        let (port, offset, len) = upcall::pop(chunk, packet.offset as usize, packet.len as usize)?;
        if usize::from(port) >= MAX_PORTS {
            return None;
        }
        packet.offset = offset as u32;
        packet.len = len as u32;
        Some(port)
    }

    fn drop(&mut self, port: PortId, cause: DropCause, packet: Packet) {
        self.shared.counters.drop(port, cause, 1);
        self.free[usize::from(packet.frame.umem())]
            .frames
            .push(packet.frame);
    }
}
