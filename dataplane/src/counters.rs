//! Per-worker counters: plain relaxed atomics that only their worker writes, summed by the
//! control thread on demand (as Firecracker's metrics). No locked instructions on the hot path:
//! a single writer does load + store.

use std::sync::atomic::{AtomicU64, Ordering};

use flowtable::{DropReason, PortId};

/// The highest port number plus one.
pub const MAX_PORTS: usize = 1024;

/// Why the dataplane dropped a packet: the pipeline's reasons and its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropCause {
    /// The pipeline decided to drop.
    Pipeline(DropReason),
    /// The output socket's TX ring was full.
    TxRingFull,
    /// No free frame for a copy (flooding, or crossing between UMEMs).
    NoBuffer,
    /// The worker owning the output port had no room for the hand-off.
    HandoffFull,
    /// The output port has no socket (it is being removed).
    NoPort,
    /// A VLAN edit had no room or the frame was too short for it.
    EditFailed,
}

impl DropCause {
    /// Every cause, in counter order.
    pub const ALL: [DropCause; 17] = [
        DropCause::Pipeline(DropReason::Malformed),
        DropCause::Pipeline(DropReason::VlanFiltered),
        DropCause::Pipeline(DropReason::SamePort),
        DropCause::Pipeline(DropReason::Rule),
        DropCause::Pipeline(DropReason::NoRoute),
        DropCause::Pipeline(DropReason::TtlExceeded),
        DropCause::Pipeline(DropReason::NoNeighbor),
        DropCause::Pipeline(DropReason::ToRouter),
        DropCause::Pipeline(DropReason::InvalidSource),
        DropCause::Pipeline(DropReason::MacLock),
        DropCause::Pipeline(DropReason::MacLimit),
        DropCause::Pipeline(DropReason::Storm),
        DropCause::TxRingFull,
        DropCause::NoBuffer,
        DropCause::HandoffFull,
        DropCause::NoPort,
        DropCause::EditFailed,
    ];

    fn index(self) -> usize {
        const PIPELINE: usize = DropReason::ALL.len();
        match self {
            DropCause::Pipeline(r) => r as usize,
            DropCause::TxRingFull => PIPELINE,
            DropCause::NoBuffer => PIPELINE + 1,
            DropCause::HandoffFull => PIPELINE + 2,
            DropCause::NoPort => PIPELINE + 3,
            DropCause::EditFailed => PIPELINE + 4,
        }
    }

    /// A short stable name for JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            DropCause::Pipeline(r) => r.name(),
            DropCause::TxRingFull => "tx_ring_full",
            DropCause::NoBuffer => "no_buffer",
            DropCause::HandoffFull => "handoff_full",
            DropCause::NoPort => "no_port",
            DropCause::EditFailed => "edit_failed",
        }
    }
}

const DROP_KINDS: usize = DropCause::ALL.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_indexes_follow_all() {
        for (i, d) in DropCause::ALL.iter().enumerate() {
            assert_eq!(d.index(), i, "{d:?}");
        }
    }
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// One port's counters in one worker.
#[derive(Debug, Default)]
pub(crate) struct PortCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    kernel_rx_packets: AtomicU64,
    kernel_tx_packets: AtomicU64,
    drops: [AtomicU64; DROP_KINDS],
}

/// A snapshot of a port's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Of the packets received, those the kernel fast path forwarded (or dropped).
    pub kernel_rx_packets: u64,
    /// Of the packets sent, those the kernel fast path redirected.
    pub kernel_tx_packets: u64,
    /// Drops, indexed like [`DropCause::ALL`].
    pub drops: [u64; DROP_KINDS],
}

impl PortStats {
    /// Counter-wise `self - base` (for counters since a port was added).
    pub fn since(&self, base: &PortStats) -> PortStats {
        let mut drops = [0; DROP_KINDS];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = self.drops[i].wrapping_sub(base.drops[i]);
        }
        PortStats {
            rx_packets: self.rx_packets.wrapping_sub(base.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(base.rx_bytes),
            tx_packets: self.tx_packets.wrapping_sub(base.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(base.tx_bytes),
            kernel_rx_packets: self.kernel_rx_packets.wrapping_sub(base.kernel_rx_packets),
            kernel_tx_packets: self.kernel_tx_packets.wrapping_sub(base.kernel_tx_packets),
            drops,
        }
    }

    /// Counter-wise sum.
    pub fn add(&mut self, other: &PortStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.kernel_rx_packets += other.kernel_rx_packets;
        self.kernel_tx_packets += other.kernel_tx_packets;
        for (d, o) in self.drops.iter_mut().zip(other.drops) {
            *d += o;
        }
    }

    /// Drops of one cause.
    pub fn drop_count(&self, cause: DropCause) -> u64 {
        self.drops[cause.index()]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

/// A snapshot of one worker's own counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Loop iterations.
    pub loops: u64,
    /// Iterations that moved at least one packet.
    pub busy_loops: u64,
    /// Nanoseconds spent in iterations that moved packets (busy time; the rest of the
    /// worker's life it spun or slept without work).
    pub busy_ns: u64,
    /// Times the worker slept in `poll` for lack of work.
    pub sleeps: u64,
    /// Flow cache hits.
    pub cache_hits: u64,
    /// Flow cache misses.
    pub cache_misses: u64,
    /// Entries in the flow cache.
    pub cache_entries: u64,
    /// Entries in the worker's MAC table (each worker holds a replica).
    pub mac_entries: u64,
    /// Kernel fast-path entries this worker installed.
    pub fast_path_entries: u64,
    /// `sendto` kicks of TX rings.
    pub tx_kicks: u64,
    /// Packets handed to another worker.
    pub handoffs: u64,
    /// MAC events that could not be sent to a peer (its queue was full).
    pub mac_events_lost: u64,
}

/// All counters of one worker.
#[derive(Debug)]
pub(crate) struct WorkerCounters {
    ports: Box<[PortCounters]>,
    loops: AtomicU64,
    busy_loops: AtomicU64,
    busy_ns: AtomicU64,
    sleeps: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_entries: AtomicU64,
    mac_entries: AtomicU64,
    fast_path_entries: AtomicU64,
    tx_kicks: AtomicU64,
    handoffs: AtomicU64,
    mac_events_lost: AtomicU64,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            ports: (0..MAX_PORTS).map(|_| PortCounters::default()).collect(),
            loops: AtomicU64::new(0),
            busy_loops: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            sleeps: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            cache_entries: AtomicU64::new(0),
            mac_entries: AtomicU64::new(0),
            fast_path_entries: AtomicU64::new(0),
            tx_kicks: AtomicU64::new(0),
            handoffs: AtomicU64::new(0),
            mac_events_lost: AtomicU64::new(0),
        }
    }
}

impl WorkerCounters {
    pub(crate) fn rx(&self, port: PortId, packets: u64, bytes: u64) {
        let p = &self.ports[usize::from(port)];
        bump(&p.rx_packets, packets);
        bump(&p.rx_bytes, bytes);
    }

    pub(crate) fn tx(&self, port: PortId, packets: u64, bytes: u64) {
        let p = &self.ports[usize::from(port)];
        bump(&p.tx_packets, packets);
        bump(&p.tx_bytes, bytes);
    }

    /// Packets the kernel fast path forwarded from `port`; counted in rx too.
    pub(crate) fn kernel_rx(&self, port: PortId, packets: u64, bytes: u64) {
        self.rx(port, packets, bytes);
        bump(&self.ports[usize::from(port)].kernel_rx_packets, packets);
    }

    /// Packets the kernel fast path redirected to `port`; counted in tx too.
    pub(crate) fn kernel_tx(&self, port: PortId, packets: u64, bytes: u64) {
        self.tx(port, packets, bytes);
        bump(&self.ports[usize::from(port)].kernel_tx_packets, packets);
    }

    pub(crate) fn drop(&self, port: PortId, cause: DropCause, n: u64) {
        bump(&self.ports[usize::from(port)].drops[cause.index()], n);
    }

    pub(crate) fn loop_done(&self, busy: bool) {
        bump(&self.loops, 1);
        if busy {
            bump(&self.busy_loops, 1);
        }
    }

    /// A busy iteration took `ns` nanoseconds.
    pub(crate) fn busy_for(&self, ns: u64) {
        bump(&self.busy_ns, ns);
    }

    pub(crate) fn slept(&self) {
        bump(&self.sleeps, 1);
    }

    pub(crate) fn kicked(&self, n: u64) {
        bump(&self.tx_kicks, n);
    }

    pub(crate) fn handed_off(&self, n: u64) {
        bump(&self.handoffs, n);
    }

    pub(crate) fn mac_event_lost(&self) {
        bump(&self.mac_events_lost, 1);
    }

    pub(crate) fn set_cache(&self, stats: flowtable::PipelineStats, entries: usize) {
        self.cache_hits.store(stats.cache_hits, Ordering::Relaxed);
        self.cache_misses
            .store(stats.cache_misses, Ordering::Relaxed);
        self.cache_entries.store(entries as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_tables(&self, mac_entries: usize, fast_path_entries: usize) {
        self.mac_entries
            .store(mac_entries as u64, Ordering::Relaxed);
        self.fast_path_entries
            .store(fast_path_entries as u64, Ordering::Relaxed);
    }

    /// The loop count alone: it advances while the worker lives, idle or not.
    pub(crate) fn loops(&self) -> u64 {
        self.loops.load(Ordering::Relaxed)
    }

    pub(crate) fn port(&self, port: PortId) -> PortStats {
        let p = &self.ports[usize::from(port)];
        let mut drops = [0; DROP_KINDS];
        for (d, c) in drops.iter_mut().zip(&p.drops) {
            *d = c.load(Ordering::Relaxed);
        }
        PortStats {
            rx_packets: p.rx_packets.load(Ordering::Relaxed),
            rx_bytes: p.rx_bytes.load(Ordering::Relaxed),
            tx_packets: p.tx_packets.load(Ordering::Relaxed),
            tx_bytes: p.tx_bytes.load(Ordering::Relaxed),
            kernel_rx_packets: p.kernel_rx_packets.load(Ordering::Relaxed),
            kernel_tx_packets: p.kernel_tx_packets.load(Ordering::Relaxed),
            drops,
        }
    }

    pub(crate) fn worker(&self) -> WorkerStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            loops: r(&self.loops),
            busy_loops: r(&self.busy_loops),
            busy_ns: r(&self.busy_ns),
            sleeps: r(&self.sleeps),
            cache_hits: r(&self.cache_hits),
            cache_misses: r(&self.cache_misses),
            cache_entries: r(&self.cache_entries),
            mac_entries: r(&self.mac_entries),
            fast_path_entries: r(&self.fast_path_entries),
            tx_kicks: r(&self.tx_kicks),
            handoffs: r(&self.handoffs),
            mac_events_lost: r(&self.mac_events_lost),
        }
    }
}
