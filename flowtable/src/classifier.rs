//! The rule classifier: tuple-space search over [`Rule`]s.
//!
//! Rules are grouped by mask into *subtables*, each a hash table keyed by the masked
//! [`FlowKey`] (ahash with fixed seeds, so the classifier is deterministic). A lookup masks the
//! packet's key with each subtable's mask and probes that subtable once, so its cost grows
//! with the number of distinct masks, not the number of rules, as in OVS's classifier.
//!
//! Subtables are kept in descending order of the highest priority they hold, and a lookup
//! stops at the first subtable whose highest priority is below the best match so far: a
//! table of a few high-priority exceptions over a big low-priority table rarely reaches the
//! big one.
//!
//! # The winner
//! The matching rule of highest priority wins; between rules of equal priority the one with
//! the **lowest id** wins. OpenFlow leaves overlapping equal-priority rules undefined; xvs
//! picks deterministically so that every worker and every run agrees.
//!
//! # Snapshots
//! Cloning is cheap: subtables and rules are reference counted, and a change to a clone copies
//! only the subtable it touches (and the id index). The control plane clones the classifier,
//! changes the clone and publishes it, while the workers keep reading the old one.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

use crate::key::FlowKey;
use crate::rule::{Match, Rule};

type Hasher = ahash::RandomState;

fn hasher() -> Hasher {
    // Fixed seeds: lookups and iteration are the same in every run and every worker.
    ahash::RandomState::with_seeds(0xc1a55, 0xf1e1d, 0x7ab1e, 0x2)
}

/// A masked key, hashed in one pass: the derived `Hash` of [`FlowKey`] feeds the hasher
/// field by field (seventeen rounds), which was half the cost of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaskedKey(FlowKey);

impl Hash for MaskedKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Packed into nine words without loss, then folded by five independent 64×64→128
        // multiplies (as wyhash does); the map's hasher mixes the result once more.
        #[inline]
        fn fold(a: u64, b: u64) -> u64 {
            let product = u128::from(a) * u128::from(b);
            (product as u64) ^ ((product >> 64) as u64)
        }
        let k = &self.0;
        let w0 = u64::from(k.in_port)
            | u64::from(k.vlan) << 16
            | u64::from(k.dl_type) << 32
            | u64::from(k.nw_proto) << 48
            | u64::from(k.nw_ttl) << 56;
        let w1 = k.dl_src ^ u64::from(k.tp_src) << 48;
        let w2 = k.dl_dst ^ u64::from(k.tp_dst) << 48;
        let w3 = u64::from(k.nw_tos)
            | u64::from(k.ct_state) << 8
            | u64::from(k.tcp_flags) << 16
            | u64::from(k.ct_zone) << 32;
        let w4 = u64::from(k.ipv6_label) | u64::from(k.ct_mark) << 32;
        let h = fold(w0 ^ 0x243f_6a88_85a3_08d3, w1 ^ 0x1319_8a2e_0370_7344)
            ^ fold(
                w2 ^ 0xa409_3822_299f_31d0,
                k.nw_src as u64 ^ 0x082e_fa98_ec4e_6c89,
            )
            ^ fold(
                (k.nw_src >> 64) as u64 ^ 0x4528_21e6_38d0_1377,
                k.nw_dst as u64 ^ 0xbe54_66cf_34e9_0c6c,
            )
            ^ fold(
                (k.nw_dst >> 64) as u64 ^ 0xc0ac_29b7_c97c_50dd,
                w3 ^ 0x3f84_d5b5_b547_0917,
            )
            ^ fold(w4 ^ 0x7e4e_1a6b_28a9_13d5, 0x9c30_d539_2af2_6013);
        state.write_u64(h);
    }
}

/// The rules of one mask.
#[derive(Debug, Clone)]
struct Subtable {
    mask: FlowKey,
    /// The highest priority of any rule here.
    max_priority: u16,
    /// Masked value → the rules of that exact match (one per priority), best first.
    buckets: HashMap<MaskedKey, Vec<Arc<Rule>>, Hasher>,
    /// How many rules of each priority are here, to keep `max_priority` when one leaves.
    priorities: BTreeMap<u16, u32>,
}

impl Subtable {
    fn new(mask: FlowKey) -> Subtable {
        Subtable {
            mask,
            max_priority: 0,
            buckets: HashMap::with_hasher(hasher()),
            priorities: BTreeMap::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.priorities.is_empty()
    }

    /// Where the rule of `priority` is, in the bucket of `value`.
    fn position(&self, value: &FlowKey, priority: u16) -> Option<usize> {
        self.buckets
            .get(&MaskedKey(*value))?
            .iter()
            .position(|r| r.priority == priority)
    }

    fn count_in(&mut self, priority: u16) {
        *self.priorities.entry(priority).or_insert(0) += 1;
        self.max_priority = self.max_priority.max(priority);
    }

    fn count_out(&mut self, priority: u16) {
        if let Some(n) = self.priorities.get_mut(&priority) {
            *n -= 1;
            if *n == 0 {
                self.priorities.remove(&priority);
            }
        }
        self.max_priority = self.priorities.keys().next_back().copied().unwrap_or(0);
    }
}

/// A set of rules, looked up by packet.
///
/// # Examples
/// ```
/// use flowtable::flow_spec::parse_flow;
/// use flowtable::{Classifier, FlowKey};
///
/// let no_names = |_: &str| None;
/// let mut classifier = Classifier::new();
/// for (id, text) in ["priority=10,actions=normal", "priority=20,tcp,tp_dst=22,actions=drop"]
///     .into_iter()
///     .enumerate()
/// {
///     classifier.insert(parse_flow(text, &no_names)?.into_rule(id as u32));
/// }
/// let ssh = FlowKey { dl_type: 0x0800, nw_proto: 6, tp_dst: 22, ..FlowKey::default() };
/// assert_eq!(classifier.lookup(&ssh).map(|r| r.id), Some(1));
/// let web = FlowKey { tp_dst: 80, ..ssh };
/// assert_eq!(classifier.lookup(&web).map(|r| r.id), Some(0));
/// # Ok::<(), flowtable::flow_spec::FlowSpecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Classifier {
    /// In descending order of `max_priority`.
    subtables: Vec<Arc<Subtable>>,
    by_id: Arc<HashMap<u32, Arc<Rule>, Hasher>>,
    /// The union of the subtables' masks.
    masks: FlowKey,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new()
    }
}

impl Classifier {
    /// An empty classifier.
    pub fn new() -> Classifier {
        Classifier {
            subtables: Vec::new(),
            by_id: Arc::new(HashMap::with_hasher(hasher())),
            masks: FlowKey::ZERO,
        }
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The number of distinct masks, which is what a lookup costs.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// The rule that decides for a packet of flow `key`: the matching rule of highest
    /// priority, the lowest id among equals. `None` if no rule matches.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<&Rule> {
        let mut best: Option<&Rule> = None;
        for subtable in &self.subtables {
            if let Some(b) = best
                && subtable.max_priority < b.priority
            {
                break;
            }
            if let Some(bucket) = subtable.buckets.get(&MaskedKey(key.masked(&subtable.mask))) {
                let candidate = &*bucket[0];
                if best.is_none_or(|b| candidate.beats(b)) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// The rule with this id.
    pub fn get(&self, id: u32) -> Option<&Rule> {
        self.by_id.get(&id).map(|r| &**r)
    }

    /// Every rule, highest priority first, then by id (the order of `dump-flows`). Sorts on
    /// each call: this is for the control plane, not for packets.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Rule> {
        let mut rules: Vec<&Rule> = self.by_id.values().map(|r| &**r).collect();
        rules.sort_unstable_by_key(|r| (core::cmp::Reverse(r.priority), r.id));
        rules.into_iter()
    }

    /// Adds a rule. A rule with the same match and priority is replaced, as in OpenFlow, and
    /// returned; the new rule keeps its own id.
    ///
    /// # Panics
    /// If another rule (one that `rule` does not replace) already has `rule.id`: ids are
    /// the caller's to keep unique.
    pub fn insert(&mut self, rule: Rule) -> Option<Rule> {
        if let Some(holder) = self.by_id.get(&rule.id) {
            assert!(
                holder.is_strictly(holder.table, &rule.pattern, rule.priority),
                "rule id {} is already used by another rule",
                rule.id
            );
        }
        let mask = *rule.pattern.mask();
        let value = *rule.pattern.value();
        let priority = rule.priority;
        let id = rule.id;
        let index = match self.subtables.iter().position(|s| s.mask == mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Arc::new(Subtable::new(mask)));
                self.subtables.len() - 1
            }
        };
        let rule = Arc::new(rule);
        Arc::make_mut(&mut self.by_id).insert(rule.id, Arc::clone(&rule));
        let subtable = Arc::make_mut(&mut self.subtables[index]);
        let bucket = subtable.buckets.entry(MaskedKey(value)).or_default();
        let replaced = match bucket.iter().position(|r| r.priority == priority) {
            Some(i) => Some(core::mem::replace(&mut bucket[i], rule)),
            None => {
                let at = bucket.partition_point(|r| r.priority > priority);
                bucket.insert(at, rule);
                subtable.count_in(priority);
                None
            }
        };
        self.sort_subtables();
        let replaced = replaced?;
        if replaced.id != id {
            Arc::make_mut(&mut self.by_id).remove(&replaced.id);
        }
        Some(Arc::unwrap_or_clone(replaced))
    }

    /// Removes the rule with exactly this match and priority (`del-flows --strict`).
    pub fn remove_strict(&mut self, pattern: &Match, priority: u16) -> Option<Rule> {
        let index = self
            .subtables
            .iter()
            .position(|s| s.mask == *pattern.mask())?;
        let at = self.subtables[index].position(pattern.value(), priority)?;
        let subtable = Arc::make_mut(&mut self.subtables[index]);
        let bucket = subtable
            .buckets
            .get_mut(&MaskedKey(*pattern.value()))
            .expect("bucket found above");
        let rule = bucket.remove(at);
        if bucket.is_empty() {
            subtable.buckets.remove(&MaskedKey(*pattern.value()));
        }
        subtable.count_out(priority);
        if subtable.is_empty() {
            self.subtables.remove(index);
        }
        self.sort_subtables();
        Arc::make_mut(&mut self.by_id).remove(&rule.id);
        Some(Arc::unwrap_or_clone(rule))
    }

    /// Removes every rule whose match `pattern` covers (`del-flows` without `--strict`, see
    /// [`Match::covers`]); returns them in [`Classifier::iter`] order.
    pub fn remove_matching(&mut self, pattern: &Match) -> Vec<Rule> {
        let doomed: Vec<(Match, u16)> = self
            .iter()
            .filter(|r| pattern.covers(&r.pattern))
            .map(|r| (r.pattern, r.priority))
            .collect();
        doomed
            .iter()
            .filter_map(|(m, p)| self.remove_strict(m, *p))
            .collect()
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        *self = Classifier::new();
    }

    fn sort_subtables(&mut self) {
        // Stable, and nearly sorted already: one change moves at most one subtable.
        self.subtables
            .sort_by_key(|s| core::cmp::Reverse(s.max_priority));
        self.masks = self.subtables.iter().fold(FlowKey::ZERO, |acc, s| FlowKey {
            in_port: acc.in_port | s.mask.in_port,
            vlan: acc.vlan | s.mask.vlan,
            dl_type: acc.dl_type | s.mask.dl_type,
            nw_proto: acc.nw_proto | s.mask.nw_proto,
            nw_ttl: acc.nw_ttl | s.mask.nw_ttl,
            dl_src: acc.dl_src | s.mask.dl_src,
            dl_dst: acc.dl_dst | s.mask.dl_dst,
            nw_src: acc.nw_src | s.mask.nw_src,
            nw_dst: acc.nw_dst | s.mask.nw_dst,
            tp_src: acc.tp_src | s.mask.tp_src,
            tp_dst: acc.tp_dst | s.mask.tp_dst,
            nw_tos: acc.nw_tos | s.mask.nw_tos,
            tcp_flags: acc.tcp_flags | s.mask.tcp_flags,
            ipv6_label: acc.ipv6_label | s.mask.ipv6_label,
            ct_state: acc.ct_state | s.mask.ct_state,
            ct_zone: acc.ct_zone | s.mask.ct_zone,
            ct_mark: acc.ct_mark | s.mask.ct_mark,
        });
    }

    /// Every bit any rule here matches on (the union of the masks): the fields a lookup
    /// depends on.
    pub fn masks(&self) -> &FlowKey {
        &self.masks
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::rule::Action;

    const FULL16: u16 = u16::MAX;

    fn field_mask(in_port: bool, tp_dst: bool, nw_dst_bits: u32) -> FlowKey {
        FlowKey {
            in_port: if in_port { FULL16 } else { 0 },
            tp_dst: if tp_dst { FULL16 } else { 0 },
            nw_dst: u128::from(u32::MAX.checked_shl(32 - nw_dst_bits).unwrap_or(0)),
            ..FlowKey::default()
        }
    }

    fn rule(id: u32, priority: u16, value: FlowKey, mask: FlowKey) -> Rule {
        Rule {
            id,
            table: 0,
            priority,
            pattern: Match::new(value, mask),
            actions: vec![Action::Output(id as u16)],
        }
    }

    fn packet(in_port: u16, nw_dst: u32, tp_dst: u16) -> FlowKey {
        FlowKey {
            in_port,
            nw_dst: u128::from(nw_dst),
            tp_dst,
            dl_type: 0x0800,
            nw_proto: 6,
            ..FlowKey::default()
        }
    }

    #[test]
    fn highest_priority_then_lowest_id() {
        let mut c = Classifier::new();
        let p = packet(1, 0x0a00_0001, 80);
        c.insert(rule(5, 10, p, field_mask(true, false, 0)));
        c.insert(rule(7, 20, p, field_mask(false, true, 0)));
        assert_eq!(c.lookup(&p).map(|r| r.id), Some(7));
        c.insert(rule(3, 20, p, field_mask(false, false, 24)));
        assert_eq!(c.lookup(&p).map(|r| r.id), Some(3));
        assert_eq!(c.lookup(&packet(1, 0x0b00_0001, 81)).map(|r| r.id), Some(5));
        assert_eq!(c.lookup(&packet(2, 0x0b00_0001, 81)), None);
        assert_eq!(c.len(), 3);
        assert_eq!(c.subtable_count(), 3);
        let order: Vec<u32> = c.iter().map(|r| r.id).collect();
        assert_eq!(order, [3, 7, 5]);
        assert_eq!(c.get(7).map(|r| r.priority), Some(20));
    }

    #[test]
    fn same_match_and_priority_replaces() {
        let mut c = Classifier::new();
        let p = packet(1, 0, 80);
        let mask = field_mask(false, true, 0);
        assert_eq!(c.insert(rule(1, 10, p, mask)), None);
        assert_eq!(c.insert(rule(2, 11, p, mask)), None);
        let old = c.insert(rule(3, 10, p, mask)).expect("replaced");
        assert_eq!(old.id, 1);
        assert_eq!(c.len(), 2);
        assert!(c.get(1).is_none());
        assert_eq!(c.get(3).map(|r| r.priority), Some(10));
        // Same id, same match and priority: a plain replacement.
        assert_eq!(c.insert(rule(3, 10, p, mask)).map(|r| r.id), Some(3));
        assert_eq!(c.len(), 2);
    }

    #[test]
    #[should_panic(expected = "already used")]
    fn duplicate_id_panics() {
        let mut c = Classifier::new();
        c.insert(rule(1, 10, packet(1, 0, 80), field_mask(true, false, 0)));
        c.insert(rule(1, 10, packet(2, 0, 80), field_mask(true, false, 0)));
    }

    #[test]
    fn removal_strict_and_non_strict() {
        let mut c = Classifier::new();
        let p = packet(1, 0x0a00_0001, 80);
        c.insert(rule(1, 10, p, field_mask(true, true, 0)));
        c.insert(rule(2, 20, p, field_mask(true, false, 24)));
        c.insert(rule(3, 30, packet(2, 0, 80), field_mask(true, false, 0)));
        let m = Match::new(p, field_mask(true, true, 0));
        assert!(c.remove_strict(&m, 11).is_none());
        assert_eq!(c.remove_strict(&m, 10).map(|r| r.id), Some(1));
        assert_eq!(c.subtable_count(), 2);
        c.insert(rule(1, 10, p, field_mask(true, true, 0)));
        let in_port_1 = Match::new(p, field_mask(true, false, 0));
        let removed: Vec<u32> = c.remove_matching(&in_port_1).iter().map(|r| r.id).collect();
        assert_eq!(removed, [2, 1]);
        assert_eq!(c.lookup(&p), None);
        assert_eq!(c.lookup(&packet(2, 0, 1)).map(|r| r.id), Some(3));
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.subtable_count(), 0);
    }

    #[test]
    fn clones_are_independent_snapshots() {
        let mut c = Classifier::new();
        let p = packet(1, 0, 80);
        c.insert(rule(1, 10, p, field_mask(true, false, 0)));
        let snapshot = c.clone();
        c.insert(rule(2, 20, p, field_mask(true, false, 0)));
        c.remove_strict(&Match::new(p, field_mask(true, false, 0)), 10);
        assert_eq!(snapshot.lookup(&p).map(|r| r.id), Some(1));
        assert_eq!(c.lookup(&p).map(|r| r.id), Some(2));
    }

    /// The reference: a list scanned linearly with the same semantics.
    #[derive(Default)]
    struct Naive(Vec<Rule>);

    impl Naive {
        fn insert(&mut self, rule: Rule) {
            self.0
                .retain(|r| !r.is_strictly(r.table, &rule.pattern, rule.priority));
            self.0.push(rule);
        }

        fn lookup(&self, key: &FlowKey) -> Option<u32> {
            self.0
                .iter()
                .filter(|r| r.pattern.matches(key))
                .max_by_key(|r| (r.priority, core::cmp::Reverse(r.id)))
                .map(|r| r.id)
        }

        fn sorted_ids(&self) -> Vec<u32> {
            let mut rules: Vec<&Rule> = self.0.iter().collect();
            rules.sort_by_key(|r| (core::cmp::Reverse(r.priority), r.id));
            rules.iter().map(|r| r.id).collect()
        }
    }

    /// Masks: subsets of a few fields, with prefix lengths for the addresses.
    fn masks() -> impl Strategy<Value = FlowKey> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec![0u32, 8, 16, 24, 32]),
            prop::sample::select(vec![0u16, 0xff00, 0xffff]),
        )
            .prop_map(
                |(port, vlan, dl_type, proto, nw_dst_bits, tp_dst)| FlowKey {
                    in_port: if port { FULL16 } else { 0 },
                    vlan: if vlan { 0x1fff } else { 0 },
                    dl_type: if dl_type { FULL16 } else { 0 },
                    nw_proto: if proto { 0xff } else { 0 },
                    nw_dst: u128::from(u32::MAX.checked_shl(32 - nw_dst_bits).unwrap_or(0)),
                    tp_dst,
                    ..FlowKey::default()
                },
            )
    }

    /// Keys from small pools, so that rules and packets meet.
    fn keys() -> impl Strategy<Value = FlowKey> {
        (
            0u16..3,
            prop::sample::select(vec![0u16, 0x1001, 0x1002]),
            prop::sample::select(vec![0x0800u16, 0x0806]),
            prop::sample::select(vec![6u8, 17]),
            prop::sample::select(vec![0x0a00_0001u32, 0x0a00_0102, 0x0a01_0001, 0x0b00_0001]),
            prop::sample::select(vec![80u16, 443, 0x01bb + 0x100]),
            0u8..3,
        )
            .prop_map(
                |(in_port, vlan, dl_type, nw_proto, nw_dst, tp_dst, ttl)| FlowKey {
                    in_port,
                    vlan,
                    dl_type,
                    nw_proto,
                    nw_ttl: ttl,
                    nw_dst: u128::from(nw_dst),
                    tp_dst,
                    ..FlowKey::default()
                },
            )
    }

    fn rule_sets() -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec(masks(), 1..5).prop_flat_map(|masks| {
            let n = masks.len();
            prop::collection::vec((0..n, keys(), 0u16..4), 0..60).prop_map(move |specs| {
                specs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (m, value, priority))| {
                        // Unique ids in an order unrelated to insertion (37 is prime to 101).
                        let id = (i as u32 * 37) % 101;
                        rule(id, priority, value, masks[m])
                    })
                    .collect()
            })
        })
    }

    fn check(c: &Classifier, naive: &Naive, packets: &[FlowKey]) -> Result<(), TestCaseError> {
        for p in packets {
            prop_assert_eq!(c.lookup(p).map(|r| r.id), naive.lookup(p), "packet {:?}", p);
        }
        prop_assert_eq!(c.len(), naive.0.len());
        prop_assert_eq!(
            c.iter().map(|r| r.id).collect::<Vec<_>>(),
            naive.sorted_ids()
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn same_winner_as_linear_scan(
            rules in rule_sets(),
            packets in prop::collection::vec(keys(), 1..40),
            strict_removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            broad_removal in (keys(), masks()),
        ) {
            let mut c = Classifier::new();
            let mut naive = Naive::default();
            for r in &rules {
                c.insert(r.clone());
                naive.insert(r.clone());
            }
            check(&c, &naive, &packets)?;

            let snapshot = c.clone();
            for index in &strict_removals {
                if naive.0.is_empty() {
                    break;
                }
                let victim = naive.0.remove(index.index(naive.0.len()));
                let removed = c.remove_strict(&victim.pattern, victim.priority);
                prop_assert_eq!(removed.map(|r| r.id), Some(victim.id));
            }
            check(&c, &naive, &packets)?;

            let (value, mask) = broad_removal;
            let pattern = Match::new(value, mask);
            let removed: Vec<u32> = c.remove_matching(&pattern).iter().map(|r| r.id).collect();
            let expected = Naive(naive.0.iter().filter(|r| pattern.covers(&r.pattern)).cloned().collect());
            prop_assert_eq!(removed, expected.sorted_ids());
            naive.0.retain(|r| !pattern.covers(&r.pattern));
            check(&c, &naive, &packets)?;

            // The snapshot taken before the removals still answers as before them.
            let mut before = Naive::default();
            for r in &rules {
                before.insert(r.clone());
            }
            check(&snapshot, &before, &packets)?;
        }
    }
}
