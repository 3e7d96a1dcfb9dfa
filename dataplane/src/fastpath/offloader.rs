//! A worker's side of the fast path: it installs the decisions the kernel can carry out,
//! follows their dependencies to remove them when they go stale, and folds their counters
//! into the port, rule and MAC counters.

use std::collections::HashMap;
use std::sync::Arc;

use flowtable::wire::EthernetAddress;
use flowtable::{Decision, DropReason, FlowKey, PortId};

use super::MAX_FLOWS;
use super::abi::{KernelKey, KernelValue};
use super::maps::FastPathMaps;
use super::policy::{KernelAction, Output, offload};
use crate::counters::WorkerCounters;
use crate::hook::HookKind;

/// What a worker knows of a port for the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FastPort {
    /// The interface index (a tc program's redirect target).
    pub(crate) ifindex: u32,
    /// Whether an XDP program may redirect frames to it (it is in the DEVMAP).
    pub(crate) target: bool,
    /// The hook on the port: which program decides its flows, and how frames reach it.
    pub(crate) hook: HookKind,
    /// Whether a tc program may deliver straight into the far end (`bpf_redirect_peer`): a
    /// veth whose peer is in another namespace (a container's). A peer beside it (an
    /// internal port's host side) is reached through the veth itself.
    pub(crate) peer: bool,
    /// Its frames may carry TCP/UDP checksums left for offload (a veth).
    pub(crate) partial_checksums: bool,
}

/// A kernel entry, as `dump-fast-path` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastEntry {
    /// The ingress port.
    pub in_port: PortId,
    /// The output port (`None`: dropped).
    pub out_port: Option<PortId>,
    /// Destination MAC of the flow.
    pub dst: EthernetAddress,
    /// Source MAC of the flow.
    pub src: EthernetAddress,
    /// EtherType of the flow.
    pub ethertype: u16,
    /// The rule that decided, if any.
    pub rule: Option<u32>,
    /// Packets the kernel forwarded, as of the last fold.
    pub packets: u64,
    /// Bytes the kernel forwarded, as of the last fold.
    pub bytes: u64,
}

/// Ports by number, as the fast path sees them.
pub(crate) type FastPorts = Vec<Option<FastPort>>;

/// A kernel entry a worker installed, and what it needs to follow it.
#[derive(Debug, Clone)]
struct Installed {
    /// The flow, to have userspace decide it again if the kernel entry goes away.
    flow: FlowKey,
    in_port: PortId,
    out_port: Option<PortId>,
    /// The rules the decision went through (one per table), each counting its packets.
    rules: Vec<u32>,
    learn: Option<(u16, u64, PortId)>,
    /// The connection the decision looked at, kept alive by the kernel's packets.
    conn: Option<flowtable::conntrack::ConnKey>,
    deps: [Option<u16>; flowtable::pipeline::MAX_DEPS],
    /// The pipeline's change count when the decision was made.
    seq: u64,
    /// Bytes each packet gains (pushed tag) or loses (stripped tag) on the way out.
    tx_delta: i64,
    packets: u64,
    bytes: u64,
    last_seen: u64,
    /// When (pipeline clock) the counters last moved.
    active_at: u64,
}

/// Entries idle for this long are removed from the kernel (they come back on the next
/// packet, through userspace).
const IDLE_NS: u64 = 10_000_000_000;
/// How often counters are folded in without being asked.
const SYNC_NS: u64 = 1_000_000_000;

/// A worker's side of the fast path: the entries it installed, their dependencies, and the
/// counters it already folded in.
#[derive(Debug)]
pub(crate) struct Offloader {
    maps: Arc<FastPathMaps>,
    ports: Arc<FastPorts>,
    epoch: u32,
    installed: HashMap<KernelKey, Installed>,
    by_bucket: HashMap<u16, Vec<KernelKey>>,
    invalidated: Vec<(u16, u64)>,
    buf: Vec<u8>,
    /// CLOCK_MONOTONIC at the pipeline clock's zero.
    monotonic_zero: u64,
    last_sync: u64,
}

/// A kernel entry as a worker would write it: the key the ingress port's program looks up,
/// the value that carries the decision out, and the action the value stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: KernelKey,
    pub(crate) value: KernelValue,
    pub(crate) action: KernelAction,
}

/// The kernel entry for `decision` on flow `key`, decided under `epoch` with `ports` as the
/// fast path sees them; `None` when the kernel must leave the flow to userspace (a decision
/// that taught the pipeline something, one the kernel cannot carry out, an ingress port
/// without a program, an output the ingress port's program cannot reach).
pub(crate) fn entry(
    ports: &FastPorts,
    epoch: u32,
    key: &FlowKey,
    decision: &Decision,
    miss: &flowtable::Miss,
    config: &flowtable::Config,
) -> Option<Entry> {
    let port = |p: PortId| ports.get(usize::from(p)).copied().flatten();
    if !miss.cacheable || epoch == 0 {
        tracing::debug!(cacheable = miss.cacheable, epoch, "not offloaded");
        return None;
    }
    if miss.unkeyed {
        // Rules looked at the TTL, TOS, TCP flags or flow label, which the kernel's key
        // cannot tell apart.
        tracing::debug!("not offloaded: rules on fields the kernel key lacks");
        return None;
    }
    let Some(ingress) = port(key.in_port) else {
        tracing::debug!(port = key.in_port, "not offloaded: no fast port");
        return None;
    };
    if ingress.hook == HookKind::Xdp && ingress.partial_checksums && key.is_ipv6() {
        // The XDP program finishes IPv4's checksums only, and the kernel key of an IPv6
        // flow (L2 fields) would take its TCP and UDP frames too: they stay in userspace,
        // which finishes them.
        tracing::debug!(port = key.in_port, "not offloaded: IPv6 from a veth's XDP");
        return None;
    }
    let Some(action) = offload(key, decision, config) else {
        tracing::debug!(?decision, "not offloaded: decision");
        return None;
    };
    let output = match action.out_port {
        Some(p) => match (port(p), ingress.hook) {
            // An XDP program redirects through the DEVMAP, to devices that take it.
            (Some(out), HookKind::Xdp) if out.target => Output {
                slot: u32::from(p),
                ifindex: out.ifindex,
                peer: false,
            },
            // A tc program redirects to any device, into a tc port's container directly.
            (Some(out), HookKind::Tc) => Output {
                slot: u32::from(p),
                ifindex: out.ifindex,
                peer: out.hook == HookKind::Tc && out.peer,
            },
            _ => return None,
        },
        None => Output::default(),
    };
    Some(Entry {
        key: KernelKey::of(key),
        value: action.value(output, epoch),
        action,
    })
}

impl Offloader {
    pub(crate) fn new(maps: Arc<FastPathMaps>, monotonic_zero: u64) -> Offloader {
        Offloader {
            maps,
            ports: Arc::new(Vec::new()),
            epoch: 0,
            installed: HashMap::new(),
            by_bucket: HashMap::new(),
            invalidated: Vec::new(),
            buf: Vec::new(),
            monotonic_zero,
            last_sync: 0,
        }
    }

    /// The entries this worker installed, with what they counted so far.
    pub(crate) fn entries(&self) -> Vec<FastEntry> {
        self.installed
            .iter()
            .map(|(k, e)| FastEntry {
                in_port: e.in_port,
                out_port: e.out_port,
                dst: EthernetAddress(k.dl_dst),
                src: EthernetAddress(k.dl_src),
                ethertype: u16::from_be_bytes(k.dl_type),
                rule: e.rules.first().copied(),
                packets: e.packets,
                bytes: e.bytes,
            })
            .collect()
    }

    /// How many entries this worker installed.
    pub(crate) fn installed(&self) -> usize {
        self.installed.len()
    }

    /// Entries this worker installed, by ingress port.
    pub(crate) fn counts(&self) -> HashMap<PortId, usize> {
        let mut counts = HashMap::new();
        for e in self.installed.values() {
            *counts.entry(e.in_port).or_insert(0) += 1;
        }
        counts
    }

    pub(crate) fn set_ports(&mut self, ports: Arc<FastPorts>) {
        self.ports = ports;
    }

    /// A new configuration: fold what the old entries counted, then forget them (the epoch
    /// already made them dead in the kernel; the control thread deletes them).
    pub(crate) fn reset(
        &mut self,
        epoch: u32,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
        now: u64,
    ) {
        self.sync(pipeline, counters, now);
        self.installed.clear();
        self.by_bucket.clear();
        self.epoch = epoch;
    }

    /// Whether [`install`](Self::install) would write this decision into the kernel.
    pub(crate) fn would_offload(
        &self,
        key: &FlowKey,
        decision: &Decision,
        miss: &flowtable::Miss,
        config: &flowtable::Config,
    ) -> bool {
        entry(&self.ports, self.epoch, key, decision, miss, config).is_some()
    }

    /// Writes the decision for `key` into the kernel if the kernel can carry it out.
    pub(crate) fn install(
        &mut self,
        key: &FlowKey,
        decision: &Decision,
        miss: &flowtable::Miss,
        config: &flowtable::Config,
        now: u64,
    ) {
        if self.installed.len() as u32 >= MAX_FLOWS / 2 {
            tracing::debug!("not offloaded: the kernel table is full");
            return;
        }
        let Some(Entry {
            key: kkey,
            value,
            action,
        }) = entry(&self.ports, self.epoch, key, decision, miss, config)
        else {
            return;
        };
        if let Err(e) = self.maps.insert(&kkey, &value) {
            tracing::debug!("fast path entry not installed: {e}");
            return;
        }
        let tx_delta = action.tx_delta();
        for b in miss.deps.iter().flatten() {
            self.by_bucket.entry(*b).or_default().push(kkey);
        }
        self.installed.insert(
            kkey,
            Installed {
                flow: *key,
                in_port: key.in_port,
                out_port: action.out_port,
                rules: decision.rules().to_vec(),
                learn: miss.learn,
                conn: miss.conn,
                deps: miss.deps,
                seq: miss.seq,
                tx_delta,
                packets: 0,
                bytes: 0,
                last_seen: 0,
                active_at: now,
            },
        );
    }

    /// Deletes the kernel entries whose dependencies changed in the pipeline.
    pub(crate) fn invalidate(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
    ) {
        if let Some(seq) = pipeline.take_invalidations(&mut self.invalidated) {
            let keys: Vec<KernelKey> = self
                .installed
                .iter()
                .filter(|(_, e)| e.seq < seq)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                self.remove(&k, pipeline, counters);
            }
        }
        while let Some((bucket, seq)) = self.invalidated.pop() {
            // Entries decided after the change already saw it.
            let stale: Vec<KernelKey> = self
                .by_bucket
                .get(&bucket)
                .into_iter()
                .flatten()
                .filter(|k| self.installed.get(*k).is_some_and(|e| e.seq < seq))
                .copied()
                .collect();
            for k in stale {
                self.remove(&k, pipeline, counters);
            }
        }
    }

    fn remove(
        &mut self,
        key: &KernelKey,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
    ) {
        let Some(mut entry) = self.installed.remove(key) else {
            return;
        };
        // Count what it forwarded since the last fold, then delete it (the few packets in
        // between are the only ones not counted).
        self.fold(key, &mut entry, pipeline, counters);
        self.maps.remove(key);
        for b in entry.deps.iter().flatten() {
            if let Some(keys) = self.by_bucket.get_mut(b) {
                keys.retain(|k| k != key);
            }
        }
    }

    /// Reads an entry's counters and adds what is new to the port, rule and MAC counters.
    /// Returns false if the kernel no longer has it.
    fn fold(
        &mut self,
        key: &KernelKey,
        entry: &mut Installed,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
    ) -> bool {
        let Some((packets, bytes, last_seen)) = self.maps.counters(key, &mut self.buf) else {
            return false;
        };
        let dp = packets.saturating_sub(entry.packets);
        let db = bytes.saturating_sub(entry.bytes);
        entry.packets = packets;
        entry.bytes = bytes;
        if dp == 0 {
            return true;
        }
        counters.kernel_rx(entry.in_port, dp, db);
        match entry.out_port {
            Some(out) => {
                let tx = (db as i64 + entry.tx_delta * dp as i64).max(0) as u64;
                counters.kernel_tx(out, dp, tx);
            }
            None => counters.drop(
                entry.in_port,
                crate::counters::DropCause::Pipeline(DropReason::Rule),
                dp,
            ),
        }
        for &rule in &entry.rules {
            pipeline.add_rule_counts(rule, dp, db);
        }
        let seen = last_seen.saturating_sub(self.monotonic_zero);
        if let Some((vlan, mac, port)) = entry.learn {
            pipeline.refresh_source(vlan, mac, port, seen);
        }
        if let Some(conn) = &entry.conn {
            pipeline.refresh_conn(conn, seen);
        }
        entry.last_seen = seen;
        entry.active_at = entry.active_at.max(seen);
        true
    }

    /// Folds every entry's new counts in, and removes entries idle for a while. Every
    /// [`SYNC_NS`] unless `force`.
    pub(crate) fn sync_if_due(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
        now: u64,
    ) {
        if now.saturating_sub(self.last_sync) >= SYNC_NS {
            self.sync(pipeline, counters, now);
        }
    }

    /// Folds every entry's new counts in now.
    pub(crate) fn sync(
        &mut self,
        pipeline: &mut flowtable::Pipeline,
        counters: &WorkerCounters,
        now: u64,
    ) {
        self.last_sync = now;
        let keys: Vec<KernelKey> = self.installed.keys().copied().collect();
        for k in keys {
            let Some(mut entry) = self.installed.remove(&k) else {
                continue;
            };
            let alive = self.fold(&k, &mut entry, pipeline, counters);
            let idle = now.saturating_sub(entry.active_at) >= IDLE_NS;
            if alive && !idle {
                self.installed.insert(k, entry);
            } else {
                if alive {
                    self.maps.remove(&k);
                }
                // The flow's next packet comes to userspace: decide it afresh there, so that
                // it is offloaded again rather than served by the userspace cache forever.
                pipeline.forget(&entry.flow);
                for b in entry.deps.iter().flatten() {
                    if let Some(keys) = self.by_bucket.get_mut(b) {
                        keys.retain(|x| x != &k);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flowtable::wire::EtherType;
    use flowtable::{Config, EgressTag, PortConfig, VlanMode};

    use super::*;

    /// IPv6 from a veth's XDP program stays in userspace (which finishes the TCP and UDP
    /// checksums a container left for offload; the program finishes IPv4's only); from
    /// another device's XDP, or a tc program (whose skb keeps its partial checksum), it is
    /// the kernel's.
    #[test]
    fn ipv6_from_a_veths_xdp_program_stays_in_userspace() {
        // Ports 1-3 send to port 4.
        let kinds = [
            (HookKind::Xdp, true),
            (HookKind::Xdp, false),
            (HookKind::Tc, true),
            (HookKind::Xdp, false),
        ];
        let mut config = Config::default();
        let mut ports: FastPorts = vec![None];
        for (id, (hook, veth)) in (1..).zip(kinds) {
            config.set_port(PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 0, id as u8]),
                vlan: VlanMode::All,
                security: Default::default(),
            });
            ports.push(Some(FastPort {
                ifindex: 10 + u32::from(id),
                target: true,
                hook,
                partial_checksums: veth,
                peer: true,
            }));
        }
        let miss = flowtable::Miss {
            deps: [None; flowtable::pipeline::MAX_DEPS],
            learn: None,
            cacheable: true,
            seq: 0,
            conn: None,
            unkeyed: false,
        };
        let out = Decision::output(4, Some(EgressTag::Untagged));
        let offloaded = |in_port, dl_type| {
            let key = FlowKey {
                in_port,
                dl_type,
                dl_src: 0x02_00_00_00_00_0a,
                dl_dst: 0x02_00_00_00_00_0b,
                ..FlowKey::default()
            };
            entry(&ports, 1, &key, &out, &miss, &config).is_some()
        };
        assert!(!offloaded(1, EtherType::IPV6), "a veth's XDP");
        assert!(offloaded(1, EtherType::IPV4), "IPv4 from a veth's XDP");
        assert!(offloaded(2, EtherType::IPV6), "another device's XDP");
        assert!(offloaded(3, EtherType::IPV6), "tc");
    }
}
