//! What the switch counts and knows, summed over workers and the kernel: port and worker
//! counters, the MAC table, rule counters, resolved neighbors, the fast path's entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use flowtable::PortId;
use flowtable::pipeline::ConnTable;
use xvs_sys::xsk::XdpStatistics;

use super::{Switch, SwitchError};
use crate::counters::{PortStats, WorkerStats};
use crate::fastpath::FastEntry;
use crate::worker::{Command, FdbEntry, NeighborEntry, TraceReport};

/// One worker's statistics, with where it runs.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The worker's index.
    pub id: usize,
    /// The CPU it is pinned to.
    pub cpu: Option<usize>,
    /// Its kernel thread id.
    pub tid: i32,
    /// Its counters.
    pub stats: WorkerStats,
    /// Its per-port counters, for ports it touched.
    pub ports: Vec<(PortId, PortStats)>,
}

/// A port's counters: the dataplane's and the kernel's.
#[derive(Debug, Clone)]
pub struct PortCounters {
    /// The port.
    pub id: PortId,
    /// The interface.
    pub name: String,
    /// Summed over workers, since the port was added.
    pub stats: PortStats,
    /// The kernel's AF_XDP counters, summed over the port's sockets.
    pub kernel: XdpStatistics,
}

impl Switch {
    pub(super) fn sum_port(&self, id: PortId) -> PortStats {
        let mut total = PortStats::default();
        for w in &self.workers {
            total.add(&w.shared.counters.port(id));
        }
        total
    }

    /// Counters of every port since it was added, whichever level forwarded the packets.
    pub fn port_counters(&self) -> Vec<PortCounters> {
        if let Err(e) = self.sync_fast_path() {
            tracing::warn!("fast path counters not folded in: {e}");
        }
        self.port_counters_unsynced()
    }

    /// [`Switch::port_counters`] without making the workers fold the kernel's counters in
    /// first: the fast path's share is as of the workers' last fold (they fold every second).
    /// It reads counters and the sockets' statistics only, and asks no worker anything.
    pub fn port_counters_unsynced(&self) -> Vec<PortCounters> {
        self.ports
            .values()
            .map(|p| {
                let base = self.baselines.get(&p.id).copied().unwrap_or_default();
                let mut kernel = XdpStatistics::default();
                for q in &p.queues {
                    if let Ok(s) = q.socket.statistics() {
                        kernel.rx_dropped += s.rx_dropped;
                        kernel.rx_invalid_descs += s.rx_invalid_descs;
                        kernel.tx_invalid_descs += s.tx_invalid_descs;
                        kernel.rx_ring_full += s.rx_ring_full;
                        kernel.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
                        kernel.tx_ring_empty_descs += s.tx_ring_empty_descs;
                    }
                }
                PortCounters {
                    id: p.id,
                    name: p.interface.name.clone(),
                    stats: self.sum_port(p.id).since(&base),
                    kernel,
                }
            })
            .collect()
    }

    /// Every worker's counters, and its per-port counters for the current ports.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers
            .iter()
            .map(|w| WorkerInfo {
                id: w.shared.id,
                cpu: w.cpu,
                tid: w.shared.tid.load(Ordering::Relaxed),
                stats: w.shared.counters.worker(),
                ports: self
                    .ports
                    .keys()
                    .map(|&id| (id, w.shared.counters.port(id)))
                    .collect(),
            })
            .collect()
    }

    /// Each worker's loop count. A live worker's advances at least every 100 ms, idle or
    /// not (an idle worker's sleep is bounded), so one that stands still is stuck.
    pub fn worker_progress(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.shared.counters.loops())
            .collect()
    }

    /// Frames free in the UMEM pools (for diagnostics and leak tests).
    pub fn pooled_frames(&self) -> usize {
        self.umems.iter().map(|u| u.pooled()).sum()
    }

    /// What the switch would do with a packet of flow `key` (its `in_port` a port's number),
    /// as the first worker sees it: every table and rule, the conntrack lookups, the bridge
    /// and router steps, the decision, and whether it would be cached and offloaded. Nothing
    /// is learned, committed or counted.
    ///
    /// # Errors
    /// The worker did not answer.
    pub fn trace(&self, key: flowtable::FlowKey) -> Result<TraceReport, SwitchError> {
        self.workers[0].ask(|reply| Command::Trace(key, reply))
    }

    /// The connection tracker's counters.
    pub fn conntrack_stats(&self) -> flowtable::conntrack::CtStats {
        self.conntrack.stats()
    }

    /// Forgets the tracked connections of `zone` (every zone when `None`) and makes every
    /// cached and offloaded decision stale, so that none of them lets a forgotten
    /// connection's packets through; returns how many went.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn flush_conntrack(&mut self, zone: Option<u16>) -> Result<usize, SwitchError> {
        let n = self.conntrack.flush(zone);
        self.publish(self.config.as_ref().clone())?;
        Ok(n)
    }

    /// The tracked connections worth handing to a successor (see `Conntrack::save`), their
    /// timeouts as of now.
    pub fn save_conntrack(&self) -> Vec<flowtable::conntrack::SavedConn> {
        self.conntrack.save(self.now_ns())
    }

    /// Takes connections a predecessor handed over; returns how many.
    pub fn restore_conntrack(&self, saved: &[flowtable::conntrack::SavedConn]) -> usize {
        self.conntrack.restore(saved, self.now_ns())
    }

    /// The tracked connections.
    pub fn connections(&self) -> Vec<flowtable::conntrack::ConnEntry> {
        self.conntrack.snapshot().iter().collect()
    }

    /// The learned MAC table (as the first worker sees it; the others hold replicas).
    ///
    /// # Errors
    /// The worker did not answer.
    pub fn fdb(&self) -> Result<Vec<FdbEntry>, SwitchError> {
        self.sync_fast_path()?;
        let mut entries = self.workers[0].ask(Command::Fdb)?;
        entries.sort_by_key(|e| (e.vlan, e.mac));
        Ok(entries)
    }

    /// How many sources the workers saw and could not learn because the MAC table was full
    /// of live entries (each worker counts the frames it decided).
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn macs_not_learned(&self) -> Result<u64, SwitchError> {
        let mut total = 0;
        for w in &self.workers {
            total += w.ask(Command::PipelineStats)?.macs_not_learned;
        }
        Ok(total)
    }

    /// Packets and bytes each rule decided, summed over the workers, by rule id.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn rule_stats(&self) -> Result<HashMap<u32, (u64, u64)>, SwitchError> {
        self.sync_fast_path()?;
        self.rule_stats_unsynced()
    }

    /// [`Switch::rule_stats`] without making the workers fold the kernel's counters in first
    /// (they fold every second): each worker sums its own counters and flow cache between two
    /// iterations, and touches no kernel map for it.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn rule_stats_unsynced(&self) -> Result<HashMap<u32, (u64, u64)>, SwitchError> {
        let mut total = HashMap::new();
        for w in &self.workers {
            for (rule, (packets, bytes)) in w.ask(Command::RuleStats)? {
                let t: &mut (u64, u64) = total.entry(rule).or_default();
                t.0 += packets;
                t.1 += bytes;
            }
        }
        Ok(total)
    }

    /// The router's resolved neighbors (as the first worker sees them).
    ///
    /// # Errors
    /// The worker did not answer.
    pub fn neighbors(&self) -> Result<Vec<NeighborEntry>, SwitchError> {
        let mut entries = self.workers[0].ask(Command::Neighbors)?;
        entries.sort_by_key(|e| e.ip);
        Ok(entries)
    }

    /// Forgets every learned address, in every worker.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fdb_flush(&self) -> Result<(), SwitchError> {
        for w in &self.workers {
            w.send(Command::FdbFlush)?;
        }
        self.barrier()
    }

    /// Makes the workers fold the kernel entries' counters in now.
    pub(super) fn sync_fast_path(&self) -> Result<(), SwitchError> {
        if self.fast.is_some() {
            for w in &self.workers {
                w.ask(Command::SyncFastPath)?;
            }
        }
        Ok(())
    }

    /// Every kernel entry, with its counters.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fast_path_dump(&self) -> Result<Vec<FastEntry>, SwitchError> {
        let mut all = Vec::new();
        if self.fast.is_some() {
            for w in &self.workers {
                all.extend(w.ask(Command::FastPathEntries)?);
            }
        }
        Ok(all)
    }

    /// Kernel entries installed, by ingress port.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fast_path_entries(&self) -> Result<BTreeMap<PortId, usize>, SwitchError> {
        let mut total = BTreeMap::new();
        if self.fast.is_some() {
            for w in &self.workers {
                for (port, n) in w.ask(Command::FastPathCounts)? {
                    *total.entry(port).or_insert(0) += n;
                }
            }
        }
        Ok(total)
    }
}
