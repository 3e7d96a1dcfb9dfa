//! Cache coherence: what each cached decision depended on, the generation counters whose
//! change makes it stale, and the changes reported to a second-level cache.

use core::net::IpAddr;

use super::{MAX_DEPS, Miss, Pipeline};
use crate::action::{Decision, DropReason};
use crate::conntrack::ConnKey;
use crate::key::{FlowKey, Layout};
use crate::port::PortId;
use crate::wire::EthernetAddress;

/// Generation counters, each shared by the addresses that hash to it.
pub(super) const DEP_BUCKETS: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Dep {
    bucket: u16,
    generation: u32,
}

#[derive(Debug, Clone)]
pub(super) struct CacheEntry {
    pub(super) decision: Decision,
    config_generation: u32,
    deps: [Option<Dep>; MAX_DEPS],
    /// The source this flow would have learned: (VLAN, MAC, port).
    pub(super) learn: Option<(u16, u64, PortId)>,
    /// The established connection the decision looked at.
    pub(super) conn: Option<ConnKey>,
    pub(super) packets: u64,
    pub(super) bytes: u64,
}

/// What a decision depended on, to cache it safely.
#[derive(Debug, Default)]
pub(super) struct Resolution {
    pub(super) deps: [Option<u16>; MAX_DEPS],
    pub(super) learn: Option<(u16, u64, PortId)>,
    /// The packet taught the pipeline something (a neighbor), or must be seen by the
    /// connection tracker: decide every such packet again.
    pub(super) uncacheable: bool,
    /// The established connection looked at (see `ct`).
    pub(super) conn: Option<ConnKey>,
    /// Rules looked at fields the kernel's key lacks.
    pub(super) unkeyed: bool,
}

impl Resolution {
    pub(super) fn depend(&mut self, bucket: u16) {
        if let Some(slot) = self.deps.iter_mut().find(|d| d.is_none_or(|b| b == bucket)) {
            *slot = Some(bucket);
        } else {
            // More dependencies than we track: do not cache.
            self.uncacheable = true;
        }
    }

    pub(super) fn merge(&mut self, other: Resolution) {
        for bucket in other.deps.into_iter().flatten() {
            self.depend(bucket);
        }
        self.learn = self.learn.or(other.learn);
        self.uncacheable |= other.uncacheable;
        self.unkeyed |= other.unkeyed;
        match (self.conn, other.conn) {
            (Some(a), Some(b)) if a != b => self.uncacheable = true,
            (None, b) => self.conn = b,
            _ => {}
        }
    }
}

/// Where a decision is kept: in a cache slot, or in the pipeline's slot for decisions that
/// must not be cached.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    Cache(usize),
    Uncached,
}

/// The generation bucket of a MAC address in a VLAN.
pub(super) fn bucket(vlan: u16, mac: u64) -> u16 {
    let mixed = (mac ^ (u64::from(vlan) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 54) as u16 % DEP_BUCKETS as u16
}

/// The generation bucket of a next hop's IP address.
pub(super) fn ip_bucket(ip: IpAddr) -> u16 {
    let bits = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let folded = (bits as u64) ^ ((bits >> 64) as u64) ^ 0x5bd1_e995;
    (folded.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 54) as u16 % DEP_BUCKETS as u16
}

impl Pipeline {
    /// Decides, and says where the decision is kept.
    pub(super) fn decide_at(
        &mut self,
        key: &FlowKey,
        len: u32,
        now: u64,
        packet: Option<(&[u8], &Layout)>,
    ) -> Slot {
        let storm = if EthernetAddress::from_u64(key.dl_dst).is_multicast() {
            self.storm_check(key.in_port, now)
        } else if self.port_blocked(key.in_port, now) {
            Some(DropReason::Storm)
        } else {
            None
        };
        if let Some(reason) = storm {
            self.last_miss = None;
            self.uncached = Decision::drop(reason);
            return Slot::Uncached;
        }
        if let Some(i) = self.cache.lookup(key, now) {
            let generations = &self.generations;
            let entry = self.cache.entry_mut(i);
            if entry.config_generation == self.config_generation
                && entry
                    .deps
                    .iter()
                    .flatten()
                    .all(|d| generations[usize::from(d.bucket)] == d.generation)
            {
                entry.packets += 1;
                entry.bytes += u64::from(len);
                self.stats.cache_hits += 1;
                self.last_miss = None;
                return Slot::Cache(i);
            }
        }
        self.stats.cache_misses += 1;
        let (decision, resolution) = self.resolve(key, packet, now);
        self.last_miss = Some(Miss::of(&resolution, self.change_seq));
        if resolution.uncacheable || !self.caching {
            // The packet taught us something (a neighbor), or the connection tracker must
            // see the next one too: decide it afresh.
            self.count_rules(&decision, 1, u64::from(len));
            self.uncached = decision;
            return Slot::Uncached;
        }
        if let Some(conn) = &resolution.conn {
            // From now on packets of the connection may pass unseen by the tracker.
            self.refresh_conn(conn, now);
        }
        let entry = CacheEntry {
            decision,
            config_generation: self.config_generation,
            deps: resolution.deps.map(|b| {
                b.map(|bucket| Dep {
                    bucket,
                    generation: self.generations[usize::from(bucket)],
                })
            }),
            learn: resolution.learn,
            conn: resolution.conn,
            packets: 1,
            bytes: u64::from(len),
        };
        let (i, old) = self.cache.insert(*key, entry, now);
        if let Some(old) = old {
            self.fold_counts(&old);
        }
        Slot::Cache(i)
    }

    pub(super) fn bump_bucket(&mut self, b: u16) {
        if self.track_invalidations {
            self.change_seq += 1;
            if self.invalidated.len() < DEP_BUCKETS {
                self.invalidated.push((b, self.change_seq));
            } else {
                self.invalidated_all = Some(self.change_seq);
            }
        }
        let b = usize::from(b);
        self.generations[b] = self.generations[b].wrapping_add(1);
    }

    pub(super) fn bump(&mut self, vlan: u16, mac: u64) {
        self.bump_bucket(bucket(vlan, mac));
    }

    /// Makes every cached decision stale (and says so to a second-level cache).
    pub(super) fn bump_all(&mut self) {
        if self.track_invalidations {
            self.change_seq += 1;
            self.invalidated_all = Some(self.change_seq);
        }
        self.generations
            .iter_mut()
            .for_each(|g| *g = g.wrapping_add(1));
    }

    /// What the last [`decide`](Self::decide) computed from the tables, or `None` if it was
    /// served by the cache.
    pub fn take_miss(&mut self) -> Option<Miss> {
        self.last_miss.take()
    }

    /// Starts (or stops) recording which dependency buckets change, for
    /// [`take_invalidations`](Self::take_invalidations).
    pub fn track_invalidations(&mut self, on: bool) {
        self.track_invalidations = on;
        self.invalidated.clear();
        self.invalidated_all = None;
    }

    /// Moves the buckets changed since the last call into `out`, each with the count of the
    /// change (compare with [`Miss::seq`]: only decisions made before a change depend on the
    /// old state). Returns `Some(count)` if too many changed to list: every decision made
    /// before that count is stale.
    pub fn take_invalidations(&mut self, out: &mut Vec<(u16, u64)>) -> Option<u64> {
        out.append(&mut self.invalidated);
        self.invalidated_all.take()
    }

    /// Forgets the cached decision of `key`, so that its next packet is decided afresh (and
    /// a second-level cache that dropped the flow gets a chance to take it again).
    pub fn forget(&mut self, key: &FlowKey) {
        if let Some(i) = self.cache.lookup(key, 0) {
            let entry = self.cache.entry(i).clone();
            self.fold_counts(&entry);
            self.cache.remove(key);
        }
    }
}
