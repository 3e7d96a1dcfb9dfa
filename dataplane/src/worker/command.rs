//! What the control thread asks of a worker, and how the worker answers.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::mpsc::{Sender, TryRecvError};

use flowtable::wire::EthernetAddress;
use flowtable::{Config, PortId};
use xvs_sys::os;

use super::{Queue, Worker};
use crate::backend::QueueBackend;
use crate::fastpath::{FastEntry, FastPathMaps, FastPorts, Offloader};
use crate::umem::{FreeList, Umem};

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
    /// A queue to serve.
    AddQueue(Box<Queue>),
    /// Remove every queue of a port and give their backends back, to be closed.
    RemovePort {
        port: PortId,
        reply: Sender<Vec<Box<dyn QueueBackend>>>,
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
    FastPathCounts(Sender<HashMap<PortId, usize>>),
    /// The kernel entries, after folding their counters in.
    FastPathEntries(Sender<Vec<FastEntry>>),
    SetTxMap(Arc<TxMap>),
    Fdb(Sender<Vec<FdbEntry>>),
    FdbFlush,
    /// The pipeline's counters.
    PipelineStats(Sender<flowtable::PipelineStats>),
    /// Packets and bytes per rule id.
    RuleStats(Sender<HashMap<u32, (u64, u64)>>),
    /// The resolved neighbors.
    Neighbors(Sender<Vec<NeighborEntry>>),
    /// What the pipeline would do with a packet of this flow (changing nothing).
    Trace(flowtable::FlowKey, Sender<TraceReport>),
    /// Reply once every command before this one is applied.
    Barrier(Sender<()>),
    /// Stop, giving back every queue's backend.
    Stop(Sender<Returned>),
}

/// A packet's trace, and what the caches would do with its decision.
#[derive(Debug, Clone)]
pub struct TraceReport {
    /// The walk through the tables, conntrack, bridge and router.
    pub trace: flowtable::pipeline::Trace,
    /// Whether the decision would be kept in the worker's flow cache.
    pub cached: bool,
    /// Whether it would be written into the kernel's fast path.
    pub kernel: bool,
}

/// The backends of a stopped worker's queues, with their ports, to be closed.
pub(crate) type Returned = Vec<(PortId, Box<dyn QueueBackend>)>;

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

/// A resolved neighbor of the router, as `show-neighbors` prints it.
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

impl Worker {
    pub(super) fn handle_commands(&mut self) -> ControlFlow<()> {
        loop {
            let command = match self.commands.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty) => return ControlFlow::Continue(()),
                Err(TryRecvError::Disconnected) => return self.stop(None),
            };
            match command {
                Command::AddUmem(umem) => {
                    debug_assert_eq!(usize::from(umem.id()), self.dp.areas.len());
                    self.dp.areas.push(umem.area().clone());
                    self.dp.free.push(FreeList::new(umem, 256, 1024));
                }
                Command::AddQueue(queue) => {
                    tracing::debug!(
                        worker = self.dp.shared.id,
                        port = queue.port,
                        queue = queue.queue,
                        "queue added"
                    );
                    self.dp.queues.push(*queue);
                    self.dp.reindex();
                }
                Command::RemovePort { port, reply } => {
                    let backends = self.dp.remove_port(port);
                    let _ = reply.send(backends);
                }
                Command::SetConfig(config, epoch) => {
                    self.pipeline.set_config(config.clone());
                    let now = self.now();
                    if let Some(off) = &mut self.offloader {
                        off.reset(epoch, &mut self.pipeline, &self.dp.shared.counters, now);
                    }
                    self.config = config;
                }
                Command::SetFastPath(maps) => {
                    let now = self.now();
                    if let Some(off) = &mut self.offloader {
                        // Count what the old entries forwarded before forgetting them.
                        off.sync(&mut self.pipeline, &self.dp.shared.counters, now);
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
                    let now = self.now();
                    if let Some(off) = &mut self.offloader {
                        off.sync(&mut self.pipeline, &self.dp.shared.counters, now);
                    }
                    let _ = reply.send(());
                }
                Command::FastPathEntries(reply) => {
                    let now = self.now();
                    let entries = match &mut self.offloader {
                        Some(off) => {
                            off.sync(&mut self.pipeline, &self.dp.shared.counters, now);
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
                Command::SetTxMap(map) => self.dp.set_tx_map(&map),
                Command::Fdb(reply) => {
                    let now = self.now();
                    let entries = self
                        .pipeline
                        .mac_table()
                        .iter()
                        .map(|((vlan, mac), e)| FdbEntry {
                            vlan,
                            mac: EthernetAddress::from_u64(mac),
                            port: e.port,
                            age_ns: now.saturating_sub(e.last_seen),
                            is_static: e.is_static,
                        })
                        .collect();
                    let _ = reply.send(entries);
                }
                Command::FdbFlush => self.pipeline.flush_mac_table(),
                Command::PipelineStats(reply) => {
                    let _ = reply.send(self.pipeline.stats());
                }
                Command::RuleStats(reply) => {
                    let _ = reply.send(self.pipeline.rule_stats());
                }
                Command::Trace(key, reply) => {
                    let trace = self.pipeline.trace_packet(&key, self.now());
                    let kernel = self.offloader.as_ref().is_some_and(|off| {
                        off.would_offload(&key, &trace.decision, &trace.miss, &self.config)
                    });
                    let _ = reply.send(TraceReport {
                        cached: trace.miss.cacheable,
                        kernel,
                        trace,
                    });
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

    fn stop(&mut self, reply: Option<Sender<Returned>>) -> ControlFlow<()> {
        let queues = std::mem::take(&mut self.dp.queues);
        let mut backends = Vec::new();
        for mut q in queues {
            let frames = q.tx_batch.drain(..).map(|p| p.frame);
            self.dp.free[q.umem].frames.extend(frames);
            backends.push((q.port, q.backend));
        }
        for free in &mut self.dp.free {
            free.release();
        }
        if let Some(reply) = reply {
            let _ = reply.send(backends);
        }
        ControlFlow::Break(())
    }
}
