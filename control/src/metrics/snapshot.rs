//! What a scrape shows: the switch's numbers at one moment, gathered on the control thread.

use std::time::{Duration, Instant};

use dataplane::DropCause;

use crate::daemon::Daemon;

/// The switch's numbers at one moment. Plain data: encoding it touches nothing else.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When it was taken.
    pub(crate) taken: Instant,
    pub(crate) uptime: Duration,
    pub(crate) fast_path: bool,
    pub(crate) ports: Vec<PortSample>,
    pub(crate) workers: Vec<WorkerSample>,
    /// Entries of the MAC table (the first worker's replica, as `fdb show` reads it).
    pub(crate) mac_entries: u64,
    /// Kernel fast-path entries, over every worker.
    pub(crate) fast_path_entries: u64,
    pub(crate) rules: Vec<RuleSample>,
    /// The connection tracker's counters.
    pub(crate) conntrack: flowtable::conntrack::CtStats,
}

/// One port's counters since it was added.
#[derive(Debug, Clone, Default)]
pub(crate) struct PortSample {
    pub(crate) name: String,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    /// Packets from this port the kernel fast path forwarded or dropped, no worker involved.
    pub(crate) fast_path_hits: u64,
    /// Drops by cause: the dataplane's own, then the kernel's AF_XDP socket counters
    /// (`xsk_*`). No drop is in two causes.
    pub(crate) drops: Vec<(&'static str, u64)>,
    /// Times the kernel found the fill ring empty (a sign of starved receive rings; the
    /// frames it lost for it are in `xsk_rx_dropped` in copy mode, the NIC's counters in
    /// zero-copy mode).
    pub(crate) fill_ring_empty: u64,
}

/// One worker's numbers.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerSample {
    pub(crate) id: usize,
    /// The share of the last sampling interval it spent in iterations that moved packets.
    pub(crate) busy_ratio: f64,
    pub(crate) busy: Duration,
    pub(crate) loops: u64,
    pub(crate) cache_hits: u64,
    pub(crate) cache_misses: u64,
    pub(crate) cache_entries: u64,
}

/// One rule's counters.
#[derive(Debug, Clone)]
pub(crate) struct RuleSample {
    pub(crate) id: u32,
    pub(crate) flow: String,
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

/// The share of `elapsed` that `busy_ns` more nanoseconds of busy time are, in [0, 1].
pub(crate) fn busy_ratio(busy_ns: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    (busy_ns as f64 / elapsed.as_nanos() as f64).clamp(0.0, 1.0)
}

/// Takes snapshots; remembers the last one's busy times for the ratios.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    last: Option<(Instant, Vec<u64>)>,
}

impl Sampler {
    /// The daemon's numbers now. Reads counters the workers publish, the sockets' kernel
    /// statistics and the desired state; asks the workers one thing, their rule counters
    /// (each sums its own between two iterations), and only when there are rules.
    pub(crate) fn sample(&mut self, daemon: &Daemon) -> Snapshot {
        let switch = &daemon.switch;
        let taken = Instant::now();
        let uptime = switch.uptime();
        let ports = switch
            .port_counters_unsynced()
            .into_iter()
            .map(|c| {
                let mut drops: Vec<(&'static str, u64)> = DropCause::ALL
                    .iter()
                    .map(|&cause| (cause.name(), c.stats.drop_count(cause)))
                    .collect();
                drops.extend([
                    ("xsk_rx_dropped", c.kernel.rx_dropped),
                    ("xsk_rx_ring_full", c.kernel.rx_ring_full),
                    ("xsk_rx_invalid_descs", c.kernel.rx_invalid_descs),
                    ("xsk_tx_invalid_descs", c.kernel.tx_invalid_descs),
                ]);
                PortSample {
                    name: c.name,
                    rx_packets: c.stats.rx_packets,
                    rx_bytes: c.stats.rx_bytes,
                    tx_packets: c.stats.tx_packets,
                    tx_bytes: c.stats.tx_bytes,
                    fast_path_hits: c.stats.kernel_rx_packets,
                    drops,
                    fill_ring_empty: c.kernel.rx_fill_ring_empty_descs,
                }
            })
            .collect();
        let infos = switch.workers();
        let busy_now: Vec<u64> = infos.iter().map(|w| w.stats.busy_ns).collect();
        let workers = infos
            .iter()
            .map(|w| {
                let s = &w.stats;
                let busy_ratio = match &self.last {
                    Some((at, before)) if before.len() == infos.len() => busy_ratio(
                        s.busy_ns.wrapping_sub(before[w.id]),
                        taken.saturating_duration_since(*at),
                    ),
                    _ => busy_ratio(s.busy_ns, uptime),
                };
                WorkerSample {
                    id: w.id,
                    busy_ratio,
                    busy: Duration::from_nanos(s.busy_ns),
                    loops: s.loops,
                    cache_hits: s.cache_hits,
                    cache_misses: s.cache_misses,
                    cache_entries: s.cache_entries,
                }
            })
            .collect();
        self.last = Some((taken, busy_now));
        let mac_entries = infos.first().map_or(0, |w| w.stats.mac_entries);
        let fast_path_entries = infos.iter().map(|w| w.stats.fast_path_entries).sum();
        let rules = if daemon.desired.rules.is_empty() {
            Vec::new()
        } else {
            match switch.rule_stats_unsynced() {
                Ok(stats) => daemon
                    .desired
                    .rules
                    .iter()
                    .map(|rule| {
                        let (packets, bytes) = stats.get(&rule.id).copied().unwrap_or_default();
                        RuleSample {
                            id: rule.id,
                            flow: rule.flow.clone(),
                            packets,
                            bytes,
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!("rule counters left out of the metrics: {e}");
                    Vec::new()
                }
            }
        };
        Snapshot {
            taken,
            uptime,
            fast_path: switch.fast_path(),
            ports,
            workers,
            mac_entries,
            fast_path_entries,
            rules,
            conntrack: switch.conntrack_stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ratios_are_shares_of_the_interval() {
        let second = Duration::from_secs(1);
        assert_eq!(busy_ratio(250_000_000, second), 0.25);
        assert_eq!(busy_ratio(0, second), 0.0);
        assert_eq!(busy_ratio(5, Duration::ZERO), 0.0);
        // A busy iteration that began before the interval and ended in it.
        assert_eq!(busy_ratio(1_200_000_000, second), 1.0);
    }
}
