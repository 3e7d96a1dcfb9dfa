//! Packet counters: `dump-ports`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The parameters of `dump-ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpPortsParams {
    /// Only this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The result of `dump-ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpPortsResult {
    /// Each port's counters.
    pub ports: Vec<PortCounters>,
    /// Each worker's counters.
    pub workers: Vec<WorkerCounters>,
}

/// A port's counters since it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// The port number.
    pub id: u16,
    /// The interface.
    pub name: String,
    /// Packets received, by either path.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// The part the in-kernel fast path forwarded.
    pub fast_path: FastPathCounters,
    /// Drops, by cause name.
    pub drops: BTreeMap<String, u64>,
    /// The kernel's AF_XDP counters.
    pub kernel: KernelCounters,
}

/// The packets of a port that the in-kernel fast path forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathCounters {
    /// Received.
    pub rx_packets: u64,
    /// Sent.
    pub tx_packets: u64,
}

/// The kernel's AF_XDP counters of a port, summed over its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    /// Dropped for lack of a buffer.
    pub rx_dropped: u64,
    /// Dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty.
    pub rx_fill_ring_empty: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
}

impl KernelCounters {
    /// Every counter with its name, in the order of the names.
    pub fn named(&self) -> [(&'static str, u64); 5] {
        [
            ("rx_dropped", self.rx_dropped),
            ("rx_fill_ring_empty", self.rx_fill_ring_empty),
            ("rx_invalid_descs", self.rx_invalid_descs),
            ("rx_ring_full", self.rx_ring_full),
            ("tx_invalid_descs", self.tx_invalid_descs),
        ]
    }
}

/// A worker's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerCounters {
    /// Its index.
    pub id: usize,
    /// Its CPU, if pinned.
    pub cpu: Option<usize>,
    /// Poll loops.
    pub loops: u64,
    /// Loops that found work.
    pub busy_loops: u64,
    /// Times it slept.
    pub sleeps: u64,
    /// Flow cache hits.
    pub cache_hits: u64,
    /// Flow cache misses.
    pub cache_misses: u64,
    /// Flow cache entries.
    pub cache_entries: u64,
    /// TX wake-ups asked of the kernel.
    pub tx_kicks: u64,
    /// Frames handed to another worker.
    pub handoffs: u64,
    /// Its counters per port.
    pub ports: Vec<WorkerPortCounters>,
}

/// What one worker did for one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerPortCounters {
    /// The port (null if it went away meanwhile).
    pub name: Option<String>,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped.
    pub drops: u64,
}
