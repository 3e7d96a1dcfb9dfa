//! The per-worker exact-match flow cache: flow key → a resolved decision.
//!
//! A fixed array of slots, two-way set associative (as OVS's EMC): a key may live in either
//! slot of the pair its hash picks, and a new key takes an empty slot or the one of the pair
//! used least recently. Lookups and inserts never allocate and never take locks; the cache
//! belongs to one worker.

use crate::key::FlowKey;

/// The default number of slots.
pub const DEFAULT_CAPACITY: usize = 4096;

#[derive(Debug, Clone)]
struct Slot<V> {
    key: FlowKey,
    value: V,
    last_used: u64,
}

/// A bounded exact-match cache of values of type `V` keyed by [`FlowKey`].
#[derive(Debug, Clone)]
pub struct FlowCache<V> {
    slots: Vec<Option<Slot<V>>>,
    mask: usize,
    hasher: ahash::RandomState,
    len: usize,
}

impl<V> FlowCache<V> {
    /// A cache of `capacity` slots (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> FlowCache<V> {
        let capacity = capacity.max(2).next_power_of_two();
        FlowCache {
            slots: (0..capacity).map(|_| None).collect(),
            mask: capacity - 1,
            // Fixed seeds: the cache is deterministic, like everything in this crate.
            hasher: ahash::RandomState::with_seeds(0x5eed, 0xf10e, 0xcac4e, 0x1),
            len: 0,
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The number of occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pair(&self, key: &FlowKey) -> usize {
        (self.hasher.hash_one(key) as usize) & self.mask & !1
    }

    /// The slot index holding `key`, if any.
    fn find(&self, key: &FlowKey) -> Option<usize> {
        let i = self.pair(key);
        (i..i + 2).find(|&j| self.slots[j].as_ref().is_some_and(|s| s.key == *key))
    }

    /// Looks `key` up, marking it used at `now`.
    pub fn get(&mut self, key: &FlowKey, now: u64) -> Option<&V> {
        let i = self.find(key)?;
        let slot = self.slots[i].as_mut()?;
        slot.last_used = now;
        Some(&slot.value)
    }

    /// The slot holding `key`, marking it used at `now`; read it with [`entry`](Self::entry)
    /// (one hash for a lookup that may then read or write the entry).
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<usize> {
        let i = self.find(key)?;
        if let Some(slot) = self.slots[i].as_mut() {
            slot.last_used = now;
        }
        Some(i)
    }

    /// The value in slot `i`, as returned by [`lookup`](Self::lookup) or
    /// [`insert`](Self::insert).
    ///
    /// # Panics
    /// If the slot is empty.
    pub fn entry(&self, i: usize) -> &V {
        &self.slots[i].as_ref().expect("occupied slot").value
    }

    /// The value in slot `i`, writable.
    ///
    /// # Panics
    /// If the slot is empty.
    pub fn entry_mut(&mut self, i: usize) -> &mut V {
        &mut self.slots[i].as_mut().expect("occupied slot").value
    }

    /// Inserts or replaces `key`, evicting the pair's least recently used entry if both slots
    /// are taken. Returns the slot used and the value it displaced (of this key or of the
    /// evicted one), if any.
    pub fn insert(&mut self, key: FlowKey, value: V, now: u64) -> (usize, Option<V>) {
        let i = self.find(&key).unwrap_or_else(|| {
            let p = self.pair(&key);
            match (&self.slots[p], &self.slots[p + 1]) {
                (None, _) => p,
                (_, None) => p + 1,
                (Some(a), Some(b)) => {
                    if a.last_used <= b.last_used {
                        p
                    } else {
                        p + 1
                    }
                }
            }
        });
        let old = self.slots[i].take().map(|s| s.value);
        if old.is_none() {
            self.len += 1;
        }
        self.slots[i] = Some(Slot {
            key,
            value,
            last_used: now,
        });
        (i, old)
    }

    /// Looks `key` up for writing, marking it used at `now`.
    pub fn get_mut(&mut self, key: &FlowKey, now: u64) -> Option<&mut V> {
        let i = self.find(key)?;
        let slot = self.slots[i].as_mut()?;
        slot.last_used = now;
        Some(&mut slot.value)
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&mut self, key: &FlowKey) -> bool {
        match self.find(key) {
            Some(i) => {
                self.slots[i] = None;
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.len = 0;
    }

    /// Keeps only the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&FlowKey, &V) -> bool) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| !keep(&s.key, &s.value)) {
                *slot = None;
                self.len -= 1;
            }
        }
    }

    /// Every entry with the time it was last used.
    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &V, u64)> {
        self.slots
            .iter()
            .flatten()
            .map(|s| (&s.key, &s.value, s.last_used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> FlowKey {
        FlowKey {
            in_port: 1,
            tp_src: n,
            ..FlowKey::default()
        }
    }

    #[test]
    fn hit_miss_replace() {
        let mut c = FlowCache::new(64);
        assert!(c.get(&key(1), 0).is_none());
        assert_eq!(c.insert(key(1), "a", 0).1, None);
        assert_eq!(c.get(&key(1), 1), Some(&"a"));
        assert_eq!(c.insert(key(1), "b", 2).1, Some("a"));
        let i = c.lookup(&key(1), 3).unwrap();
        *c.entry_mut(i) = "c";
        assert_eq!(c.entry(i), &"c");
        c.insert(key(1), "b", 2);
        assert_eq!(c.get(&key(1), 3), Some(&"b"));
        assert_eq!(c.len(), 1);
        assert!(c.remove(&key(1)));
        assert!(c.get(&key(1), 4).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn stays_bounded_and_keeps_recent_entries() {
        let mut c = FlowCache::new(16);
        for n in 0..1000u16 {
            c.insert(key(n), n, u64::from(n));
            assert_eq!(c.get(&key(n), u64::from(n)), Some(&n));
        }
        assert!(c.len() <= 16);
        assert_eq!(c.capacity(), 16);
    }

    #[test]
    fn retain_filters() {
        let mut c = FlowCache::new(64);
        for n in 0..10u16 {
            c.insert(key(n), n, 0);
        }
        let before = c.len();
        c.retain(|_, v| v % 2 == 0);
        assert!(c.len() < before);
        assert!(c.iter().all(|(_, v, _)| v % 2 == 0));
    }
}
