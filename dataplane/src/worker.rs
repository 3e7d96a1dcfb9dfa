//! Poll-mode workers.
//!
//! A worker is a thread, pinned to a CPU if asked, that owns a set of (port, queue) sockets and
//! loops: receive a batch from each socket, decide each packet through its [`Pipeline`], queue it
//! on the TX batch of its output socket, then send every batch (kicking the kernel until the
//! rings drain), take back transmitted frames and refill the fill rings. It never blocks on the
//! control thread: commands arrive on a channel it polls between iterations, and when there is
//! no traffic for a while it sleeps in `poll(2)` on its sockets and an eventfd.
//!
//! A packet whose output port has no socket in this worker (the port's queues belong to other
//! workers) is handed to one of those workers through a lock-free queue. All sockets of one mode
//! share a UMEM, so a hand-off moves a descriptor, not bytes.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering, fence};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use flowtable::edit::{EditError, FrameBuf};
use flowtable::key::finish_partial_checksum;
use flowtable::neighbor::Solicitation;
use flowtable::{Config, Decision, DropReason, EgressTag, Event, FlowKey, Pipeline, PortId, Step};
use xvs_sys::frame::{Packet, UmemArea};
use xvs_sys::os::{self, EventFd};
use xvs_sys::xsk::{KickError, XskRings};

use crate::counters::{Drop, MAX_PORTS, WorkerCounters};
use crate::fastpath::{FastPathMaps, FastPorts, Offloader};
use crate::umem::{FreeList, Umem};

/// Packets taken from one RX ring per iteration.
const RX_BATCH: u32 = 64;
/// Completions taken per socket per iteration.
const COMPLETION_BATCH: u32 = 512;
/// Fill a ring only when it lacks at least this many frames (batches the index update).
const FILL_BATCH: u32 = 32;
/// Kicks per socket per iteration at most (copy mode sends 32 descriptors per kick).
const MAX_KICKS: u32 = 64;
/// Empty iterations before a worker goes to sleep.
const SPIN_LOOPS: u32 = 20_000;
/// Longest sleep: periodic work (aging, completions) still happens this often.
const SLEEP_MS: i32 = 100;
/// Room in front of a copied frame, as the kernel leaves for received ones.
pub(crate) const FRAME_HEADROOM: u32 = 256;
/// Capacity of the hand-off queue of each worker.
const HANDOFF_QUEUE: usize = 4096;
/// Capacity of the MAC event queue of each worker.
const MAC_EVENT_QUEUE: usize = 4096;

/// A (port, queue) socket as a worker owns it.
#[derive(Debug)]
pub(crate) struct QueueSocket {
    pub(crate) port: PortId,
    pub(crate) queue: u32,
    pub(crate) rings: XskRings,
    /// Finish partial TCP/UDP checksums of frames received here (veth with offloads).
    pub(crate) finish_checksums: bool,
    /// Index of the socket's UMEM in the worker's free lists.
    umem: usize,
    tx_batch: Vec<Packet>,
    /// The device went away: stop using the socket until the control thread removes it.
    dead: bool,
}

impl QueueSocket {
    pub(crate) fn new(
        port: PortId,
        queue: u32,
        rings: XskRings,
        finish_checksums: bool,
        umem: u16,
    ) -> Self {
        QueueSocket {
            port,
            queue,
            rings,
            finish_checksums,
            umem: usize::from(umem),
            tx_batch: Vec::with_capacity(RX_BATCH as usize * 4),
            dead: false,
        }
    }
}

/// For each port, the workers that own one of its queues.
#[derive(Debug, Clone, Default)]
pub(crate) struct TxMap {
    pub(crate) owners: Vec<Vec<usize>>,
}

/// A request from the control thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// A new UMEM (the zero-copy one, created with the first zero-copy port).
    AddUmem(Arc<Umem>),
    AddQueue(Box<QueueSocket>),
    /// Remove every socket of a port and give the rings back.
    RemovePort {
        port: PortId,
        reply: Sender<Vec<XskRings>>,
    },
    /// A new configuration, with the fast path's epoch for it.
    SetConfig(Arc<Config>, u32),
    /// The ports as the fast path sees them.
    SetFastPorts(Arc<FastPorts>),
    /// The fast path was turned on (its maps) or off.
    SetFastPath(Option<Arc<FastPathMaps>>),
    /// Fold the kernel entries' counters in now.
    SyncFastPath(Sender<()>),
    /// Kernel entries installed, by ingress port.
    FastPathCounts(Sender<std::collections::HashMap<PortId, usize>>),
    /// The kernel entries, after folding their counters in.
    FastPathEntries(Sender<Vec<crate::fastpath::FastEntry>>),
    SetTxMap(Arc<TxMap>),
    Fdb(Sender<Vec<FdbEntry>>),
    FdbFlush,
    /// Packets and bytes per rule id.
    RuleStats(Sender<std::collections::HashMap<u32, (u64, u64)>>),
    /// The resolved neighbours.
    Neighbors(Sender<Vec<NeighborEntry>>),
    /// Reply once every command before this one is applied.
    Barrier(Sender<()>),
    /// Stop, giving back every socket.
    Stop(Sender<Vec<(PortId, XskRings)>>),
}

/// Something a worker tells the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerEvent {
    /// A socket's device went away (a kick failed with ENETDOWN or ENXIO).
    SocketDown {
        port: PortId,
        queue: u32,
        errno: i32,
    },
}

/// A learned address, as `fdb show` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    /// The internal VLAN.
    pub vlan: u16,
    /// The address.
    pub mac: flowtable::wire::EthernetAddress,
    /// The port.
    pub port: PortId,
    /// Nanoseconds since last seen.
    pub age_ns: u64,
    /// An operator's static entry.
    pub is_static: bool,
}

/// A resolved neighbour of the router, as `show-neighbors` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborEntry {
    /// Its address.
    pub ip: std::net::IpAddr,
    /// Its MAC.
    pub mac: flowtable::wire::EthernetAddress,
    /// The port it answered on.
    pub port: PortId,
    /// Its internal VLAN.
    pub vlan: u16,
    /// Nanoseconds since it was last confirmed.
    pub age_ns: u64,
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
    pub(crate) epoch: Instant,
    pub(crate) umems: Vec<Arc<Umem>>,
    pub(crate) fill_target: Arc<AtomicU32>,
    /// Most frames this worker lends to all its fill rings together.
    pub(crate) fill_budget: u32,
    /// The fast path's maps, if it is on.
    pub(crate) fast_path: Option<Arc<FastPathMaps>>,
}

/// The worker's I/O state: everything but the pipeline, so that a decision borrowed from the
/// pipeline can be executed against it.
struct Io {
    areas: Vec<Arc<UmemArea>>,
    free: Vec<FreeList>,
    sockets: Vec<QueueSocket>,
    /// Port → index of the local socket to send on.
    tx_local: Vec<Option<u16>>,
    /// Port → the worker to hand off to when there is no local socket.
    tx_remote: Vec<Option<usize>>,
    peers: Vec<Arc<WorkerShared>>,
    shared: Arc<WorkerShared>,
    /// Peers we handed packets to in this iteration (bit per worker).
    nudge_peers: u64,
    /// Scratch for expanding a decision into outputs and edits.
    targets: Vec<Target>,
    events: Sender<WorkerEvent>,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Out(PortId, Option<EgressTag>),
    Edit(Step),
}

/// A worker thread's state.
pub(crate) struct Worker {
    setup: WorkerSetup,
    pipeline: Pipeline,
    config: Arc<Config>,
    io: Io,
    offloader: Option<Offloader>,
    commands: Receiver<Command>,
    rx_batch: Vec<Packet>,
    idle_loops: u32,
    loops: u64,
}

enum Flow {
    Continue,
    Stop,
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
        let offloader = setup.fast_path.clone().map(|maps| {
            pipeline.track_invalidations(true);
            let zero = os::monotonic_ns().saturating_sub(setup.epoch.elapsed().as_nanos() as u64);
            Offloader::new(maps, zero)
        });
        Worker {
            pipeline,
            offloader,
            config,
            io: Io {
                areas,
                free,
                sockets: Vec::new(),
                tx_local: vec![None; MAX_PORTS],
                tx_remote: vec![None; MAX_PORTS],
                peers,
                shared,
                nudge_peers: 0,
                targets: Vec::new(),
                events,
            },
            setup,
            commands,
            rx_batch: Vec::with_capacity(RX_BATCH as usize),
            idle_loops: 0,
            loops: 0,
        }
    }

    fn now(&self) -> u64 {
        self.setup.epoch.elapsed().as_nanos() as u64
    }

    /// The worker's loop; returns when told to stop.
    pub(crate) fn run(mut self) {
        self.io.shared.tid.store(os::gettid(), Ordering::Relaxed);
        if let Some(cpu) = self.setup.cpu {
            match os::pin_current_thread(cpu) {
                Ok(()) => tracing::info!(worker = self.io.shared.id, cpu, "worker pinned"),
                Err(e) => tracing::warn!(worker = self.io.shared.id, cpu, "cannot pin worker: {e}"),
            }
        }
        loop {
            if let Flow::Stop = self.handle_commands() {
                break;
            }
            let now = self.now();
            let mut work = 0;
            for i in 0..self.io.sockets.len() {
                work += self.receive(i, now);
            }
            work += self.receive_handoffs();
            if let Some(off) = &mut self.offloader {
                off.invalidate(&mut self.pipeline, &self.io.shared.counters);
            }
            self.send_solicitations();
            self.io.transmit();
            self.io.reap();
            self.io.refill(
                self.setup.fill_target.load(Ordering::Relaxed),
                self.setup.fill_budget,
            );
            self.exchange_mac_events();
            self.loops += 1;
            if self.loops.is_multiple_of(1024) {
                self.pipeline.tick(now);
                if let Some(off) = &mut self.offloader {
                    off.sync_if_due(&mut self.pipeline, &self.io.shared.counters, now);
                    off.invalidate(&mut self.pipeline, &self.io.shared.counters);
                }
                self.publish_stats();
            }
            self.io.shared.counters.loop_done(work > 0);
            if work == 0 {
                self.idle(now);
            } else {
                self.idle_loops = 0;
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        self.io
            .shared
            .counters
            .set_cache(self.pipeline.stats(), self.pipeline.cache_len());
    }

    fn handle_commands(&mut self) -> Flow {
        loop {
            let command = match self.commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return self.stop(None),
            };
            match command {
                Command::AddUmem(umem) => {
                    debug_assert_eq!(usize::from(umem.id()), self.io.areas.len());
                    self.io.areas.push(umem.area().clone());
                    self.io.free.push(FreeList::new(umem, 256, 1024));
                }
                Command::AddQueue(socket) => {
                    tracing::debug!(
                        worker = self.io.shared.id,
                        port = socket.port,
                        queue = socket.queue,
                        "queue added"
                    );
                    self.io.sockets.push(*socket);
                    self.io.reindex();
                }
                Command::RemovePort { port, reply } => {
                    let rings = self.io.remove_port(port);
                    let _ = reply.send(rings);
                }
                Command::SetConfig(config, epoch) => {
                    self.pipeline.set_config(config.clone());
                    if let Some(off) = &mut self.offloader {
                        let now = self.setup.epoch.elapsed().as_nanos() as u64;
                        off.reset(epoch, &mut self.pipeline, &self.io.shared.counters, now);
                    }
                    self.config = config;
                }
                Command::SetFastPath(maps) => {
                    let now = self.now();
                    if let Some(off) = &mut self.offloader {
                        // Count what the old entries forwarded before forgetting them.
                        off.sync(&mut self.pipeline, &self.io.shared.counters, now);
                    }
                    self.pipeline.track_invalidations(maps.is_some());
                    self.offloader = maps.map(|maps| {
                        let zero = os::monotonic_ns().saturating_sub(now);
                        Offloader::new(maps, zero)
                    });
                }
                Command::SetFastPorts(ports) => {
                    if let Some(off) = &mut self.offloader {
                        off.set_ports(ports);
                    }
                }
                Command::SyncFastPath(reply) => {
                    if let Some(off) = &mut self.offloader {
                        let now = self.setup.epoch.elapsed().as_nanos() as u64;
                        off.sync(&mut self.pipeline, &self.io.shared.counters, now);
                    }
                    let _ = reply.send(());
                }
                Command::FastPathEntries(reply) => {
                    let entries = match &mut self.offloader {
                        Some(off) => {
                            let now = self.setup.epoch.elapsed().as_nanos() as u64;
                            off.sync(&mut self.pipeline, &self.io.shared.counters, now);
                            off.entries()
                        }
                        None => Vec::new(),
                    };
                    let _ = reply.send(entries);
                }
                Command::FastPathCounts(reply) => {
                    let counts = self
                        .offloader
                        .as_ref()
                        .map(Offloader::counts)
                        .unwrap_or_default();
                    let _ = reply.send(counts);
                }
                Command::SetTxMap(map) => self.io.set_tx_map(&map),
                Command::Fdb(reply) => {
                    let now = self.now();
                    let entries = self
                        .pipeline
                        .mac_table()
                        .iter()
                        .map(|((vlan, mac), e)| FdbEntry {
                            vlan,
                            mac: flowtable::wire::EthernetAddress::from_u64(mac),
                            port: e.port,
                            age_ns: now.saturating_sub(e.last_seen),
                            is_static: e.is_static,
                        })
                        .collect();
                    let _ = reply.send(entries);
                }
                Command::FdbFlush => self.pipeline.flush_mac_table(),
                Command::RuleStats(reply) => {
                    let _ = reply.send(self.pipeline.rule_stats());
                }
                Command::Neighbors(reply) => {
                    let now = self.now();
                    let entries = self
                        .pipeline
                        .neighbors()
                        .iter()
                        .map(|(ip, n)| NeighborEntry {
                            ip: *ip,
                            mac: n.mac,
                            port: n.port,
                            vlan: n.vlan,
                            age_ns: now.saturating_sub(n.updated),
                        })
                        .collect();
                    let _ = reply.send(entries);
                }
                Command::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Command::Stop(reply) => return self.stop(Some(reply)),
            }
        }
    }

    fn stop(&mut self, reply: Option<Sender<Vec<(PortId, XskRings)>>>) -> Flow {
        let sockets = std::mem::take(&mut self.io.sockets);
        let mut rings = Vec::new();
        for mut s in sockets {
            let frames = s.tx_batch.drain(..).map(|p| p.frame);
            self.io.free[s.umem].frames.extend(frames);
            rings.push((s.port, s.rings));
        }
        for free in &mut self.io.free {
            free.release();
        }
        if let Some(reply) = reply {
            let _ = reply.send(rings);
        }
        Flow::Stop
    }

    /// Receives and forwards one batch from socket `i`; returns how many packets.
    fn receive(&mut self, i: usize, now: u64) -> u32 {
        let socket = &mut self.io.sockets[i];
        if socket.dead {
            return 0;
        }
        let mut batch = std::mem::take(&mut self.rx_batch);
        let n = socket.rings.rx.receive(&mut batch, RX_BATCH);
        if n == 0 {
            self.rx_batch = batch;
            return 0;
        }
        let port = socket.port;
        let finish = socket.finish_checksums;
        // The kernel wrote these frames from another CPU: start pulling them in now.
        for p in &batch {
            self.io.areas[usize::from(p.frame.umem())].prefetch(&p.frame, p.offset);
        }
        let bytes: u64 = batch.iter().map(|p| u64::from(p.len)).sum();
        self.io.shared.counters.rx(port, u64::from(n), bytes);
        for packet in batch.drain(..) {
            self.forward(packet, port, finish, now);
        }
        self.rx_batch = batch;
        n
    }

    fn forward(&mut self, mut packet: Packet, in_port: PortId, finish: bool, now: u64) {
        let area = &self.io.areas[usize::from(packet.frame.umem())];
        let start = packet.offset as usize;
        let end = start + packet.len as usize;
        let Some(frame) = area.bytes_mut(&mut packet.frame).get_mut(start..end) else {
            self.io
                .drop(in_port, Drop::Pipeline(DropReason::Malformed), packet);
            return;
        };
        let Ok((key, layout)) = FlowKey::extract(frame, in_port) else {
            self.io
                .drop(in_port, Drop::Pipeline(DropReason::Malformed), packet);
            return;
        };
        if finish {
            finish_partial_checksum(frame, &key, &layout);
        }
        let (decision, miss) = self.pipeline.decide_detailed(&key, packet.len, now);
        if let (Some(off), Some(miss)) = (self.offloader.as_mut(), miss) {
            off.install(&key, decision, &miss, &self.config, now);
        }
        self.io.execute(decision, &self.config, packet, in_port);
    }

    /// Builds and sends the ARP requests and neighbour solicitations the pipeline asked for.
    fn send_solicitations(&mut self) {
        for solicitation in self.pipeline.take_solicitations() {
            self.io.solicit(&solicitation, &self.config);
        }
    }

    fn receive_handoffs(&mut self) -> u32 {
        let mut n = 0;
        while n < RX_BATCH * 4 {
            let Some((packet, port)) = self.io.shared.handoff.pop() else {
                break;
            };
            match self.io.tx_local[usize::from(port)] {
                Some(s) => self.io.enqueue_local(packet, port, usize::from(s)),
                None => self.io.drop(port, Drop::NoPort, packet),
            }
            n += 1;
        }
        n
    }

    fn exchange_mac_events(&mut self) {
        if self.io.peers.len() > 1 {
            let me = self.io.shared.id;
            for event in self.pipeline.take_events() {
                for peer in self.io.peers.iter().filter(|p| p.id != me) {
                    if peer.mac_events.push(event).is_err() {
                        self.io.shared.counters.mac_event_lost();
                    }
                }
            }
        } else {
            self.pipeline.take_events().for_each(drop);
        }
        while let Some(event) = self.io.shared.mac_events.pop() {
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
        let shared = self.io.shared.clone();
        shared.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if shared.handoff.is_empty() && shared.mac_events.is_empty() {
            let mut fds: Vec<BorrowedFd<'_>> = self
                .io
                .sockets
                .iter()
                .filter(|s| !s.dead)
                .map(|s| s.rings.as_fd())
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

impl Io {
    fn reindex(&mut self) {
        self.tx_local.iter_mut().for_each(|t| *t = None);
        for (i, s) in self.sockets.iter().enumerate() {
            let slot = &mut self.tx_local[usize::from(s.port)];
            if slot.is_none() && !s.dead {
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

    fn remove_port(&mut self, port: PortId) -> Vec<XskRings> {
        let mut rings = Vec::new();
        let mut kept = Vec::new();
        for mut s in self.sockets.drain(..) {
            if s.port == port {
                let frames = s.tx_batch.drain(..).map(|p| p.frame);
                self.free[s.umem].frames.extend(frames);
                rings.push(s.rings);
            } else {
                kept.push(s);
            }
        }
        self.sockets = kept;
        self.reindex();
        rings
    }

    fn drop(&mut self, port: PortId, cause: Drop, packet: Packet) {
        self.shared.counters.drop(port, cause, 1);
        self.free[usize::from(packet.frame.umem())]
            .frames
            .push(packet.frame);
    }

    fn execute(&mut self, decision: &Decision, config: &Config, packet: Packet, in_port: PortId) {
        if let Some(reason) = decision.drop_reason() {
            self.drop(in_port, Drop::Pipeline(reason), packet);
            return;
        }
        // The common case: one output, nothing else.
        if let [Step::Output { port, tag }] = decision.steps() {
            self.output(packet, *port, *tag);
            return;
        }
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        for step in decision.steps() {
            match *step {
                Step::Output { port, tag } => targets.push(Target::Out(port, tag)),
                Step::Flood { vlan, except } => targets.extend(
                    config
                        .flood_targets(vlan, except)
                        .map(|(port, tag)| Target::Out(port, Some(tag))),
                ),
                Step::FloodAll { except } => targets.extend(
                    config
                        .ports()
                        .filter(|p| p.id != except)
                        .map(|p| Target::Out(p.id, None)),
                ),
                edit => targets.push(Target::Edit(edit)),
            }
        }
        let last = targets.iter().rposition(|t| matches!(t, Target::Out(..)));
        match last {
            None => self.drop(in_port, Drop::Pipeline(DropReason::Rule), packet),
            Some(last) => self.run_targets(&targets[..=last], packet, in_port, config),
        }
        self.targets = targets;
    }

    /// Runs edits and outputs in order: every output but the last sends a copy.
    fn run_targets(
        &mut self,
        targets: &[Target],
        mut packet: Packet,
        in_port: PortId,
        config: &Config,
    ) {
        let (last, rest) = targets.split_last().expect("at least one output");
        for target in rest {
            match *target {
                Target::Edit(step) => {
                    if let Err(e) = self.edit(&mut packet, step, config) {
                        let cause = match e {
                            EditError::TtlExceeded => Drop::Pipeline(DropReason::TtlExceeded),
                            _ => Drop::EditFailed,
                        };
                        self.drop(in_port, cause, packet);
                        return;
                    }
                }
                Target::Out(port, tag) => {
                    let umem = self.output_umem(port).unwrap_or(packet.frame.umem());
                    match self.copy(&packet, umem) {
                        Some(copy) => self.output(copy, port, tag),
                        None => self.shared.counters.drop(port, Drop::NoBuffer, 1),
                    }
                }
            }
        }
        if let Target::Out(port, tag) = *last {
            self.output(packet, port, tag);
        }
    }

    fn edit(&self, packet: &mut Packet, step: Step, config: &Config) -> Result<(), EditError> {
        let area = &self.areas[usize::from(packet.frame.umem())];
        let chunk = area.bytes_mut(&mut packet.frame);
        let mut frame = FrameBuf::new(chunk, packet.offset as usize, packet.len as usize)?;
        match step {
            Step::SetEthSrc(mac) => frame.set_eth_src(mac)?,
            Step::SetEthDst(mac) => frame.set_eth_dst(mac)?,
            Step::SetVlanVid(vid) => frame.set_vlan_vid(vid)?,
            Step::StripVlan => frame.strip_vlan(),
            Step::PushVlan(vid) => frame.push_vlan(vid)?,
            Step::DecTtl => frame.dec_ttl()?,
            Step::ArpReply(mac) => frame.arp_reply(mac)?,
            Step::EchoReply(mac) => frame.echo_reply(mac)?,
            Step::NeighborAdvert(mac) => {
                frame.neighbor_advert(mac, |t| config.is_router_ip(std::net::IpAddr::V6(t)))?;
            }
            Step::Output { .. } | Step::Flood { .. } | Step::FloodAll { .. } => {}
        }
        packet.offset = frame.offset() as u32;
        packet.len = frame.len() as u32;
        Ok(())
    }

    /// Builds a solicitation frame in a fresh frame and sends it on its port, or floods it in
    /// its VLAN.
    fn solicit(&mut self, solicitation: &Solicitation, config: &Config) {
        let umem = match solicitation.port {
            Some(p) => self.output_umem(p),
            None => None,
        }
        .unwrap_or(0);
        let Some(mut frame) = self.free[usize::from(umem)].pop() else {
            return;
        };
        let area = &self.areas[usize::from(umem)];
        let chunk = area.bytes_mut(&mut frame);
        let head = FRAME_HEADROOM as usize;
        let len = solicitation.build(&mut chunk[head..]);
        let packet = Packet {
            frame,
            offset: FRAME_HEADROOM,
            len: len as u32,
        };
        let targets: Vec<Target> = match solicitation.port {
            Some(port) => {
                let tag = config
                    .port(port)
                    .and_then(|p| p.vlan.egress(solicitation.vlan))
                    .unwrap_or(EgressTag::Untagged);
                vec![Target::Out(port, Some(tag))]
            }
            None => config
                .flood_targets(solicitation.vlan, 0)
                .map(|(port, tag)| Target::Out(port, Some(tag)))
                .collect(),
        };
        if targets.is_empty() {
            self.free[usize::from(umem)].frames.push(packet.frame);
            return;
        }
        self.run_targets(&targets, packet, 0, config);
    }

    /// The UMEM of the local socket that sends on `port`, if there is one.
    fn output_umem(&self, port: PortId) -> Option<u16> {
        self.tx_local[usize::from(port)].map(|s| self.sockets[usize::from(s)].umem as u16)
    }

    /// Copies a packet into a fresh frame of UMEM `umem`.
    fn copy(&mut self, packet: &Packet, umem: u16) -> Option<Packet> {
        let mut frame = self.free[usize::from(umem)].pop()?;
        let src_area = &self.areas[usize::from(packet.frame.umem())];
        let dst_area = &self.areas[usize::from(umem)];
        let start = packet.offset as usize;
        let len = packet.len as usize;
        let head = FRAME_HEADROOM as usize;
        let src = &src_area.bytes(&packet.frame)[start..start + len];
        let dst = dst_area.bytes_mut(&mut frame);
        if head + len > dst.len() {
            self.free[usize::from(umem)].frames.push(frame);
            return None;
        }
        dst[head..head + len].copy_from_slice(src);
        Some(Packet {
            frame,
            offset: FRAME_HEADROOM,
            len: packet.len,
        })
    }

    fn output(&mut self, mut packet: Packet, port: PortId, tag: Option<EgressTag>) {
        if let Some(tag) = tag {
            let area = &self.areas[usize::from(packet.frame.umem())];
            let chunk = area.bytes_mut(&mut packet.frame);
            let applied = FrameBuf::new(chunk, packet.offset as usize, packet.len as usize)
                .and_then(|mut f| f.apply_egress(tag).map(|()| (f.offset(), f.len())));
            match applied {
                Ok((offset, len)) => {
                    packet.offset = offset as u32;
                    packet.len = len as u32;
                }
                Err(_) => {
                    self.drop(port, Drop::EditFailed, packet);
                    return;
                }
            }
        }
        if let Some(s) = self.tx_local[usize::from(port)] {
            self.enqueue_local(packet, port, usize::from(s));
        } else if let Some(worker) = self.tx_remote[usize::from(port)] {
            match self.peers[worker].handoff.push((packet, port)) {
                Ok(()) => {
                    self.shared.counters.handed_off(1);
                    self.nudge_peers |= 1 << worker;
                }
                Err((packet, port)) => self.drop(port, Drop::HandoffFull, packet),
            }
        } else {
            self.drop(port, Drop::NoPort, packet);
        }
    }

    fn enqueue_local(&mut self, packet: Packet, port: PortId, s: usize) {
        let umem = self.sockets[s].umem;
        if usize::from(packet.frame.umem()) != umem {
            // Crossing between a copy-mode and a zero-copy UMEM: the one copy we must make.
            let copy = self.copy(&packet, umem as u16);
            self.free[usize::from(packet.frame.umem())]
                .frames
                .push(packet.frame);
            match copy {
                Some(copy) => self.sockets[s].tx_batch.push(copy),
                None => self.shared.counters.drop(port, Drop::NoBuffer, 1),
            }
            return;
        }
        self.sockets[s].tx_batch.push(packet);
    }

    fn transmit(&mut self) {
        for i in 0..self.sockets.len() {
            let socket = &mut self.sockets[i];
            if !socket.tx_batch.is_empty() {
                if socket.dead {
                    let n = socket.tx_batch.len() as u64;
                    self.shared.counters.drop(socket.port, Drop::NoPort, n);
                    let frames = socket.tx_batch.drain(..).map(|p| p.frame);
                    self.free[socket.umem].frames.extend(frames);
                    continue;
                }
                let bytes: u64 = socket.tx_batch.iter().map(|p| u64::from(p.len)).sum();
                let queued = socket.rings.tx.send(&mut socket.tx_batch);
                let unsent_bytes: u64 = socket.tx_batch.iter().map(|p| u64::from(p.len)).sum();
                self.shared
                    .counters
                    .tx(socket.port, u64::from(queued), bytes - unsent_bytes);
                if !socket.tx_batch.is_empty() {
                    let n = socket.tx_batch.len() as u64;
                    self.shared.counters.drop(socket.port, Drop::TxRingFull, n);
                    let frames = socket.tx_batch.drain(..).map(|p| p.frame);
                    self.free[socket.umem].frames.extend(frames);
                }
            }
            if !socket.dead && socket.rings.tx.outstanding() > 0 {
                self.kick(i);
            }
        }
        if self.nudge_peers != 0 {
            for (w, peer) in self.peers.iter().enumerate() {
                if self.nudge_peers & (1 << w) != 0 {
                    peer.nudge();
                }
            }
            self.nudge_peers = 0;
        }
    }

    /// Kicks a TX ring until the kernel has taken everything (copy mode sends 32 per kick).
    fn kick(&mut self, i: usize) {
        let socket = &mut self.sockets[i];
        let mut kicks = 0;
        while kicks < MAX_KICKS && socket.rings.tx.outstanding() > 0 {
            kicks += 1;
            match socket.rings.kick_tx() {
                Ok(()) | Err(KickError::Again) => {}
                Err(KickError::Down(errno)) => {
                    socket.dead = true;
                    let _ = self.events.send(WorkerEvent::SocketDown {
                        port: socket.port,
                        queue: socket.queue,
                        errno,
                    });
                    break;
                }
                Err(KickError::Other(errno)) => {
                    tracing::debug!(port = socket.port, errno, "tx kick failed");
                    break;
                }
            }
        }
        self.shared.counters.kicked(u64::from(kicks));
        if self.sockets[i].dead {
            self.reindex();
        }
    }

    fn reap(&mut self) {
        for socket in &mut self.sockets {
            let free = &mut self.free[socket.umem].frames;
            socket.rings.completion.reap(free, COMPLETION_BATCH);
        }
    }

    /// Tops fill rings up to `target` frames each, keeping the sum under `budget` (frames in
    /// a fill ring are stuck there until packets arrive, so idle ports must not hoard them);
    /// under the budget every ring still gets [`FILL_BATCH`] frames.
    fn refill(&mut self, target: u32, budget: u32) {
        for free in &mut self.free {
            free.balance();
        }
        let mut lent: u32 = self
            .sockets
            .iter()
            .map(|s| s.rings.fill.outstanding())
            .sum();
        for socket in &mut self.sockets {
            if socket.dead {
                continue;
            }
            let have = socket.rings.fill.outstanding();
            let room = if lent >= budget {
                FILL_BATCH.saturating_sub(have)
            } else {
                target.saturating_sub(have).min(budget - lent)
            };
            if room >= FILL_BATCH || (have == 0 && room > 0) {
                let free = &mut self.free[socket.umem].frames;
                lent += socket.rings.fill.fill(free, room);
                if socket.rings.fill.needs_wakeup() {
                    socket.rings.kick_rx();
                }
            }
        }
    }
}
