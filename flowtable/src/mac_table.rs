//! The MAC learning table: (VLAN, MAC) → port, with aging and a size cap.
//!
//! A full table learns no new address until one ages out: a live entry is never pushed out
//! by a newcomer, so a flood of new sources cannot turn known unicast into floods.
//!
//! Time is passed in (`now`, in nanoseconds on any monotonic clock). Aging is kept cheap with a
//! queue of (entry, timestamp) records in time order: an entry is looked at only when a record
//! of it reaches the front, at which point it expires if it was not seen within the age limit,
//! or is queued again at its last sighting. Refreshes queue a new record at most every quarter
//! of the age limit, so the queue holds a few records per entry, and an entry expires at most a
//! quarter of the age limit late.

use std::collections::{HashMap, VecDeque};

use crate::port::PortId;
use crate::wire::EthernetAddress;

/// The default age limit, 300 s as in the Linux bridge and OVS.
pub const DEFAULT_MAX_AGE_NS: u64 = 300 * 1_000_000_000;
/// The default number of entries.
pub const DEFAULT_CAPACITY: usize = 8192;

/// A (VLAN, MAC) pair, the table's key; the MAC is in the low 48 bits.
pub type MacKey = (u16, u64);

/// One learned (or static) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry {
    /// Where frames to this address go.
    pub port: PortId,
    /// When a frame from this address was last seen.
    pub last_seen: u64,
    /// Configured by an operator: never ages, never moves.
    pub is_static: bool,
    queued_at: u64,
}

impl MacEntry {
    /// When the entry last had an aging record queued (refreshes re-queue at most every
    /// quarter of the age limit).
    pub fn queued_at(&self) -> u64 {
        self.queued_at
    }
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// Known on this port already; its timestamp was refreshed.
    Refreshed,
    /// A new entry. If the table was full, an entry past its age limit (not yet swept) made
    /// room.
    New {
        /// The entry evicted for it, if any.
        evicted: Option<(MacKey, PortId)>,
    },
    /// The address moved here from another port.
    Moved {
        /// The port it was on.
        from: PortId,
    },
    /// A static entry pins the address elsewhere; nothing changed.
    Pinned,
    /// The table is full of live (or static) entries; the address was not learned, and
    /// every known one keeps its port.
    Full,
    /// Not an address a host may have (zero, multicast, broadcast); nothing was learned.
    Invalid,
}

impl Learned {
    /// Whether forwarding decisions that involve this address may have changed.
    pub fn changed(&self) -> bool {
        matches!(self, Learned::New { .. } | Learned::Moved { .. })
    }
}

/// The MAC learning table of one forwarding pipeline.
#[derive(Debug, Clone)]
pub struct MacTable {
    entries: HashMap<MacKey, MacEntry, ahash::RandomState>,
    queue: VecDeque<(MacKey, u64)>,
    capacity: usize,
    max_age: u64,
    /// Entries per port (for per-port limits).
    per_port: HashMap<PortId, u32, ahash::RandomState>,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable::new(DEFAULT_CAPACITY, DEFAULT_MAX_AGE_NS)
    }
}

impl MacTable {
    /// An empty table of at most `capacity` entries that forgets addresses not seen for
    /// `max_age_ns`.
    pub fn new(capacity: usize, max_age_ns: u64) -> MacTable {
        MacTable {
            entries: HashMap::with_capacity_and_hasher(
                capacity.min(1 << 16),
                ahash::RandomState::with_seeds(1, 2, 3, 4),
            ),
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            max_age: max_age_ns.max(1),
            per_port: HashMap::with_hasher(ahash::RandomState::with_seeds(4, 3, 2, 1)),
        }
    }

    /// The number of entries on `port`.
    pub fn count_on(&self, port: PortId) -> u32 {
        self.per_port.get(&port).copied().unwrap_or(0)
    }

    fn counted(&mut self, port: PortId) {
        *self.per_port.entry(port).or_default() += 1;
    }

    fn uncounted(&mut self, port: PortId) {
        if let Some(n) = self.per_port.get_mut(&port) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_port.remove(&port);
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The age limit in nanoseconds.
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// The port frames to `mac` in `vlan` go to, if known.
    pub fn lookup(&self, vlan: u16, mac: u64) -> Option<PortId> {
        self.entries.get(&(vlan, mac)).map(|e| e.port)
    }

    /// The whole entry for `mac` in `vlan`.
    pub fn get(&self, vlan: u16, mac: u64) -> Option<&MacEntry> {
        self.entries.get(&(vlan, mac))
    }

    /// Records that a frame from `mac` in `vlan` arrived on `port` at `now`.
    pub fn learn(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) -> Learned {
        if !EthernetAddress::from_u64(mac).is_valid_unicast() {
            return Learned::Invalid;
        }
        let key = (vlan, mac);
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.is_static {
                return if entry.port == port {
                    Learned::Refreshed
                } else {
                    Learned::Pinned
                };
            }
            entry.last_seen = entry.last_seen.max(now);
            let from = entry.port;
            entry.port = port;
            if now.saturating_sub(entry.queued_at) >= self.max_age / 4 {
                entry.queued_at = now;
                self.queue.push_back((key, now));
            }
            return if from == port {
                Learned::Refreshed
            } else {
                self.uncounted(from);
                self.counted(port);
                Learned::Moved { from }
            };
        }
        let mut evicted = None;
        if self.entries.len() >= self.capacity {
            evicted = self.evict_expired(now);
            if evicted.is_none() {
                return Learned::Full;
            }
        }
        self.entries.insert(
            key,
            MacEntry {
                port,
                last_seen: now,
                is_static: false,
                queued_at: now,
            },
        );
        self.counted(port);
        self.queue.push_back((key, now));
        Learned::New { evicted }
    }

    /// Refreshes the timestamp of `mac` only if it is still on `port` (used when a cached
    /// decision stood in for learning); returns whether it was.
    pub fn refresh(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) -> bool {
        match self.entries.get(&(vlan, mac)) {
            Some(e) if e.port == port && !e.is_static => {
                self.learn(vlan, mac, port, now);
                true
            }
            _ => false,
        }
    }

    /// Pins `mac` in `vlan` to `port` (an operator's static entry).
    pub fn insert_static(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) {
        self.counted(port);
        let old = self.entries.insert(
            (vlan, mac),
            MacEntry {
                port,
                last_seen: now,
                is_static: true,
                queued_at: now,
            },
        );
        if let Some(old) = old {
            self.uncounted(old.port);
        }
    }

    /// Removes one entry; returns it.
    pub fn remove(&mut self, vlan: u16, mac: u64) -> Option<MacEntry> {
        let removed = self.entries.remove(&(vlan, mac));
        if let Some(e) = &removed {
            self.uncounted(e.port);
        }
        removed
    }

    fn is_live(&self, key: &MacKey, stamp: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| !e.is_static && e.queued_at == stamp)
    }

    /// Removes the entry of the oldest aging record if it was not seen within the age limit
    /// by `now` (the sweep would remove it next); live entries stay.
    fn evict_expired(&mut self, now: u64) -> Option<(MacKey, PortId)> {
        while let Some(&(key, stamp)) = self.queue.front() {
            if !self.is_live(&key, stamp) {
                self.queue.pop_front();
                continue;
            }
            let entry = self.entries[&key];
            if entry.last_seen.saturating_add(self.max_age) > now {
                return None;
            }
            self.queue.pop_front();
            self.entries.remove(&key);
            self.uncounted(entry.port);
            return Some((key, entry.port));
        }
        None
    }

    /// Removes the entries not seen for the age limit by `now`, appending them to `expired`.
    pub fn expire(&mut self, now: u64, expired: &mut Vec<(MacKey, PortId)>) {
        while let Some(&(key, stamp)) = self.queue.front() {
            if stamp.saturating_add(self.max_age) > now {
                break;
            }
            self.queue.pop_front();
            if !self.is_live(&key, stamp) {
                continue;
            }
            let entry = self.entries[&key];
            if entry.last_seen.saturating_add(self.max_age) <= now {
                self.entries.remove(&key);
                self.uncounted(entry.port);
                expired.push((key, entry.port));
            } else {
                // Seen since this record was queued: look again when its last sighting is due.
                if let Some(e) = self.entries.get_mut(&key) {
                    e.queued_at = e.last_seen;
                }
                self.queue.push_back((key, entry.last_seen));
            }
        }
    }

    /// Removes every learned (non-static) entry on `port`, appending them to `removed`.
    pub fn flush_port(&mut self, port: PortId, removed: &mut Vec<(MacKey, PortId)>) {
        self.entries.retain(|key, e| {
            let drop = e.port == port;
            if drop {
                removed.push((*key, e.port));
            }
            !drop
        });
        self.per_port.remove(&port);
    }

    /// Removes every learned entry, keeping static ones.
    pub fn flush(&mut self) {
        self.entries.retain(|_, e| e.is_static);
        self.queue.clear();
        self.per_port.clear();
        let statics: Vec<PortId> = self.entries.values().map(|e| e.port).collect();
        for port in statics {
            self.counted(port);
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (MacKey, &MacEntry)> {
        self.entries.iter().map(|(k, e)| (*k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn learns_and_looks_up() {
        let mut t = MacTable::new(16, 300 * S);
        assert_eq!(t.learn(0, 0xa, 1, 0), Learned::New { evicted: None });
        assert_eq!(t.lookup(0, 0xa), Some(1));
        assert_eq!(t.lookup(5, 0xa), None, "VLANs are separate");
        assert_eq!(t.learn(0, 0xa, 1, S), Learned::Refreshed);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn relearns_a_moved_mac() {
        let mut t = MacTable::new(16, 300 * S);
        t.learn(0, 0xa, 1, 0);
        assert_eq!(t.learn(0, 0xa, 2, S), Learned::Moved { from: 1 });
        assert_eq!(t.lookup(0, 0xa), Some(2));
    }

    #[test]
    fn ages_out_unseen_entries_only() {
        let mut t = MacTable::new(16, 300 * S);
        t.learn(0, 0xa, 1, 0);
        t.learn(0, 0xb, 2, 0);
        let mut expired = Vec::new();
        t.expire(299 * S, &mut expired);
        assert!(expired.is_empty());
        // b keeps talking, a goes quiet.
        t.learn(0, 0xb, 2, 200 * S);
        t.expire(300 * S, &mut expired);
        assert_eq!(expired, vec![((0, 0xa), 1)]);
        assert_eq!(t.lookup(0, 0xa), None);
        assert_eq!(t.lookup(0, 0xb), Some(2));
        expired.clear();
        t.expire(499 * S, &mut expired);
        assert!(expired.is_empty(), "b was seen at 200 s");
        t.expire(500 * S, &mut expired);
        assert_eq!(expired, vec![((0, 0xb), 2)]);
        assert!(t.is_empty());
    }

    #[test]
    fn frequent_refreshes_keep_the_queue_small() {
        let mut t = MacTable::new(16, 300 * S);
        for i in 0..100_000u64 {
            t.learn(0, 0xa, 1, i * 10_000_000); // every 10 ms for 1000 s
        }
        assert!(t.queue.len() < 20, "queue grew to {}", t.queue.len());
        let mut expired = Vec::new();
        t.expire(1000 * S, &mut expired);
        assert!(expired.is_empty());
        t.expire(1300 * S, &mut expired);
        assert_eq!(expired.len(), 1);
    }

    #[test]
    fn a_full_table_keeps_its_live_entries() {
        let mut t = MacTable::new(3, 300 * S);
        t.learn(0, 1, 1, 0);
        t.learn(0, 2, 1, S);
        t.learn(0, 3, 1, 2 * S);
        // A flood of newcomers: none of them pushes a live address out.
        for mac in 4..1000 {
            assert_eq!(t.learn(0, mac, 2, 3 * S), Learned::Full, "{mac}");
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(0, 1), Some(1), "the oldest live entry stays");
        assert_eq!(t.lookup(0, 4), None);
        // Known addresses still refresh and move while the table is full.
        assert_eq!(t.learn(0, 2, 1, 4 * S), Learned::Refreshed);
        assert_eq!(t.learn(0, 3, 2, 4 * S), Learned::Moved { from: 1 });
        // An entry past its age limit is no longer live: a newcomer takes its place even
        // before the sweep removes it.
        assert_eq!(
            t.learn(0, 5, 2, 300 * S),
            Learned::New {
                evicted: Some(((0, 1), 1))
            }
        );
        assert_eq!(t.lookup(0, 5), Some(2));
        assert_eq!(t.learn(0, 6, 2, 300 * S), Learned::Full);
        assert_eq!(t.lookup(0, 2), Some(1));
    }

    #[test]
    fn static_entries_neither_move_nor_age() {
        let mut t = MacTable::new(2, 300 * S);
        t.insert_static(0, 9, 3, 0);
        assert_eq!(t.learn(0, 9, 1, S), Learned::Pinned);
        assert_eq!(t.lookup(0, 9), Some(3));
        let mut expired = Vec::new();
        t.expire(10_000 * S, &mut expired);
        assert!(expired.is_empty());
        t.insert_static(0, 10, 3, 0);
        assert_eq!(t.learn(0, 11, 1, S), Learned::Full);
    }

    #[test]
    fn invalid_addresses_are_never_learned() {
        let mut t = MacTable::new(16, 300 * S);
        for mac in [
            0,
            0xffff_ffff_ffff,
            0x01_00_5e_00_00_01,
            0x33_33_00_00_00_01,
        ] {
            assert_eq!(t.learn(0, mac, 1, 0), Learned::Invalid, "{mac:012x}");
        }
        assert!(t.is_empty());
    }

    /// The per-port counts, recounted from the entries.
    fn recount(t: &MacTable) -> Vec<(PortId, u32)> {
        let mut counts = std::collections::BTreeMap::new();
        for (_, e) in t.iter() {
            *counts.entry(e.port).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }

    fn counts(t: &MacTable) -> Vec<(PortId, u32)> {
        let mut ports: Vec<PortId> = t.iter().map(|(_, e)| e.port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports.into_iter().map(|p| (p, t.count_on(p))).collect()
    }

    proptest::proptest! {
        #[test]
        fn per_port_counts_follow_every_change(
            ops in proptest::collection::vec((0u8..7, 0u64..12, 1u16..4, 0u64..40), 1..200)
        ) {
            let mut t = MacTable::new(6, 10 * S);
            let mut scratch = Vec::new();
            for (op, mac, port, secs) in ops {
                let now = secs * S;
                match op {
                    0 | 1 => {
                        t.learn(0, mac + 1, port, now);
                    }
                    2 => t.insert_static(0, mac + 1, port, now),
                    3 => {
                        t.remove(0, mac + 1);
                    }
                    4 => t.expire(now, &mut scratch),
                    5 => t.flush_port(port, &mut scratch),
                    _ => t.flush(),
                }
                proptest::prop_assert_eq!(counts(&t), recount(&t));
                let total: u32 = recount(&t).iter().map(|(_, n)| n).sum();
                proptest::prop_assert_eq!(total as usize, t.len());
            }
        }
    }

    #[test]
    fn flush_port_removes_only_that_port() {
        let mut t = MacTable::new(16, 300 * S);
        t.learn(0, 1, 1, 0);
        t.learn(0, 2, 2, 0);
        t.learn(7, 3, 1, 0);
        let mut removed = Vec::new();
        t.flush_port(1, &mut removed);
        removed.sort();
        assert_eq!(removed, vec![((0, 1), 1), ((7, 3), 1)]);
        assert_eq!(t.lookup(0, 2), Some(2));
        t.flush();
        assert!(t.is_empty());
    }
}
