//! The pipeline: (packet, in-port, now) → a [`Decision`], through the flow cache.
//!
//! One `Pipeline` belongs to one worker. It owns that worker's flow cache and its replica of the
//! MAC table, and reads the shared immutable [`Config`].
//!
//! # Cache coherence
//! Every cached decision records what it depends on: the configuration generation, and a
//! generation counter of the bucket of each MAC address it looked up (source and
//! destination). Any change to the MAC table bumps the bucket of the address that changed; any
//! new configuration bumps the configuration generation. A hit is used only if all recorded
//! generations are current, so no packet is forwarded by a decision older than a change the
//! pipeline has applied; the check is two array loads.
//!
//! # Learning on cache hits
//! A hit skips the MAC table, including learning the source. The source is still kept fresh:
//! each cached decision remembers (VLAN, source MAC, port), and [`Pipeline::tick`] refreshes the
//! MAC table from the entries used since the last sweep, as OVS's revalidators do. A source that
//! moves arrives on another port, which is another key, so a move is always seen by learning.
//!
//! # Several workers
//! Each worker learns what it sees and reports it as [`MacEvent`]s ([`Pipeline::take_events`])
//! for the other workers to apply ([`Pipeline::apply_event`]); refreshes are reported at most
//! every quarter of the age limit per address.

use std::sync::Arc;

use crate::action::{Decision, DropReason, Step};
use crate::cache::FlowCache;
use crate::config::Config;
use crate::key::FlowKey;
use crate::mac_table::{Learned, MacKey, MacTable};
use crate::port::PortId;
use crate::wire::EthernetAddress;

const DEP_BUCKETS: usize = 1024;
/// How often [`Pipeline::tick`] sweeps the cache and ages the MAC table.
pub const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// A MAC table change one worker tells the others about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEvent {
    /// The internal VLAN.
    pub vlan: u16,
    /// The address (low 48 bits).
    pub mac: u64,
    /// Where it was seen.
    pub port: PortId,
    /// When it was seen.
    pub seen: u64,
}

/// Counters of one pipeline. Plain integers: the owner reads and reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Decisions served by the flow cache.
    pub cache_hits: u64,
    /// Decisions computed (the key was absent or its entry stale).
    pub cache_misses: u64,
    /// Addresses learned anew.
    pub macs_learned: u64,
    /// Addresses that moved to another port.
    pub macs_moved: u64,
    /// Addresses aged out or evicted.
    pub macs_expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct Dep {
    bucket: u16,
    generation: u32,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    decision: Decision,
    config_generation: u32,
    deps: [Option<Dep>; 2],
    /// The source this flow would have learned: (VLAN, MAC, port).
    learn: Option<(u16, u64, PortId)>,
}

/// What a pipeline needs to know about a MAC lookup to cache a decision.
#[derive(Debug, Default)]
struct Resolution {
    deps: [Option<u16>; 2],
    learn: Option<(u16, u64, PortId)>,
}

/// The forwarding pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    config: Arc<Config>,
    config_generation: u32,
    mac_table: MacTable,
    cache: FlowCache<CacheEntry>,
    generations: Vec<u32>,
    events: Vec<MacEvent>,
    changed_scratch: Vec<(MacKey, PortId)>,
    last_sweep: u64,
    stats: PipelineStats,
}

fn bucket(vlan: u16, mac: u64) -> u16 {
    let mixed = (mac ^ (u64::from(vlan) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 54) as u16 % DEP_BUCKETS as u16
}

impl Pipeline {
    /// A pipeline with an empty cache and MAC table of `cache_capacity` slots.
    pub fn new(config: Arc<Config>, cache_capacity: usize) -> Pipeline {
        Pipeline {
            mac_table: MacTable::new(config.mac_capacity, config.mac_max_age_ns),
            config,
            config_generation: 0,
            cache: FlowCache::new(cache_capacity),
            generations: vec![0; DEP_BUCKETS],
            events: Vec::new(),
            changed_scratch: Vec::new(),
            last_sweep: 0,
            stats: PipelineStats::default(),
        }
    }

    /// The configuration decisions are made by.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Switches to a new configuration. Every cached decision becomes stale; learned
    /// addresses on ports that no longer exist are forgotten.
    pub fn set_config(&mut self, config: Arc<Config>) {
        if config.mac_capacity != self.config.mac_capacity
            || config.mac_max_age_ns != self.config.mac_max_age_ns
        {
            let mut table = MacTable::new(config.mac_capacity, config.mac_max_age_ns);
            for ((vlan, mac), e) in self.mac_table.iter() {
                if e.is_static {
                    table.insert_static(vlan, mac, e.port, e.last_seen);
                } else {
                    table.learn(vlan, mac, e.port, e.last_seen);
                }
            }
            self.mac_table = table;
        }
        let gone: Vec<PortId> = self
            .config
            .ports()
            .filter(|p| config.port(p.id).is_none())
            .map(|p| p.id)
            .collect();
        for port in gone {
            let mut removed = Vec::new();
            self.mac_table.flush_port(port, &mut removed);
        }
        self.config = config;
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    /// The MAC table replica of this pipeline.
    pub fn mac_table(&self) -> &MacTable {
        &self.mac_table
    }

    /// Counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// The number of entries in the flow cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Decides what to do with a packet of flow `key`.
    pub fn decide(&mut self, key: &FlowKey, now: u64) -> &Decision {
        if let Some(entry) = self.cache.get(key, now)
            && entry.config_generation == self.config_generation
            && entry
                .deps
                .iter()
                .flatten()
                .all(|d| self.generations[usize::from(d.bucket)] == d.generation)
        {
            self.stats.cache_hits += 1;
            // Looked up again to end the first borrow before the miss path (a known limit of
            // the borrow checker); only hits pay for it, and the slot is hot in cache.
            return &self
                .cache
                .get(key, now)
                .expect("entry found just above")
                .decision;
        }
        self.stats.cache_misses += 1;
        let (decision, resolution) = self.resolve(key, now);
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
        };
        &self.cache.insert(*key, entry, now).decision
    }

    /// Computes a decision from the tables, learning the source on the way.
    fn resolve(&mut self, key: &FlowKey, now: u64) -> (Decision, Resolution) {
        self.normal(key, now)
    }

    /// The L2 learning switch: learn the source, forward to the learned port of the
    /// destination, flood broadcast, multicast and unknown unicast in the frame's VLAN.
    fn normal(&mut self, key: &FlowKey, now: u64) -> (Decision, Resolution) {
        let mut resolution = Resolution::default();
        let Some(in_port) = self.config.port(key.in_port) else {
            return (Decision::drop(DropReason::Malformed), resolution);
        };
        let Some(vlan) = in_port.vlan.ingress(key.vlan_id().filter(|&v| v != 0)) else {
            return (Decision::drop(DropReason::VlanFiltered), resolution);
        };
        let src = EthernetAddress::from_u64(key.dl_src);
        if src.is_unicast() {
            self.learn_local(vlan, key.dl_src, key.in_port, now);
            resolution.deps[0] = Some(bucket(vlan, key.dl_src));
            resolution.learn = Some((vlan, key.dl_src, key.in_port));
        }
        let dst = EthernetAddress::from_u64(key.dl_dst);
        let flood = Decision::from_steps(&[Step::Flood {
            vlan,
            except: key.in_port,
        }]);
        if dst.is_multicast() {
            return (flood, resolution);
        }
        resolution.deps[1] = Some(bucket(vlan, key.dl_dst));
        let decision = match self.mac_table.lookup(vlan, key.dl_dst) {
            None => flood,
            Some(port) if port == key.in_port => Decision::drop(DropReason::SamePort),
            Some(port) => match self.config.port(port).and_then(|p| p.vlan.egress(vlan)) {
                Some(tag) => Decision::output(port, Some(tag)),
                // Learned on a port that has since left the VLAN: treat as unknown.
                None => flood,
            },
        };
        (decision, resolution)
    }

    fn bump(&mut self, vlan: u16, mac: u64) {
        let b = usize::from(bucket(vlan, mac));
        self.generations[b] = self.generations[b].wrapping_add(1);
    }

    fn note(&mut self, vlan: u16, mac: u64, learned: Learned) {
        match learned {
            Learned::New { evicted } => {
                self.stats.macs_learned += 1;
                self.bump(vlan, mac);
                if let Some(((v, m), _)) = evicted {
                    self.stats.macs_expired += 1;
                    self.bump(v, m);
                }
            }
            Learned::Moved { .. } => {
                self.stats.macs_moved += 1;
                self.bump(vlan, mac);
            }
            Learned::Refreshed | Learned::Pinned | Learned::Full => {}
        }
    }

    fn learn_local(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) {
        let learned = self.mac_table.learn(vlan, mac, port, now);
        let requeued = self
            .mac_table
            .get(vlan, mac)
            .is_some_and(|e| e.queued_at() == now);
        if learned.changed() || (learned == Learned::Refreshed && requeued) {
            self.events.push(MacEvent {
                vlan,
                mac,
                port,
                seen: now,
            });
        }
        self.note(vlan, mac, learned);
    }

    /// Applies what another worker learned.
    pub fn apply_event(&mut self, event: &MacEvent) {
        if self.config.port(event.port).is_none() {
            return;
        }
        let learned = self
            .mac_table
            .learn(event.vlan, event.mac, event.port, event.seen);
        self.note(event.vlan, event.mac, learned);
    }

    /// The MAC events learned locally since the last call, to send to the other workers.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, MacEvent> {
        self.events.drain(..)
    }

    /// Periodic work: at most every [`SWEEP_INTERVAL_NS`], refreshes the sources of cached
    /// flows used since the last sweep, and ages the MAC table.
    pub fn tick(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) < SWEEP_INTERVAL_NS {
            return;
        }
        let since = self.last_sweep;
        self.last_sweep = now;
        let used: Vec<(u16, u64, PortId, u64)> = self
            .cache
            .iter()
            .filter(|(_, _, used)| *used > since)
            .filter_map(|(_, e, used)| e.learn.map(|(v, m, p)| (v, m, p, used)))
            .collect();
        for (vlan, mac, port, used) in used {
            if self
                .mac_table
                .get(vlan, mac)
                .is_some_and(|e| e.port == port && e.last_seen < used)
            {
                self.learn_local(vlan, mac, port, used);
            }
        }
        let mut expired = std::mem::take(&mut self.changed_scratch);
        self.mac_table.expire(now, &mut expired);
        for ((vlan, mac), _) in expired.drain(..) {
            self.stats.macs_expired += 1;
            self.bump(vlan, mac);
        }
        self.changed_scratch = expired;
    }

    /// Forgets every learned address.
    pub fn flush_mac_table(&mut self) {
        self.mac_table.flush();
        self.generations
            .iter_mut()
            .for_each(|g| *g = g.wrapping_add(1));
    }

    /// Pins `mac` in `vlan` to `port`.
    pub fn add_static_mac(&mut self, vlan: u16, mac: u64, port: PortId, now: u64) {
        self.mac_table.insert_static(vlan, mac, port, now);
        self.bump(vlan, mac);
    }

    /// Removes one address (learned or static); returns whether it was there.
    pub fn remove_mac(&mut self, vlan: u16, mac: u64) -> bool {
        let removed = self.mac_table.remove(vlan, mac).is_some();
        self.bump(vlan, mac);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortConfig;
    use crate::port::{EgressTag, VlanMode};

    const S: u64 = 1_000_000_000;

    fn config(ports: &[(PortId, VlanMode)]) -> Arc<Config> {
        let mut c = Config::default();
        for (id, vlan) in ports {
            c.set_port(PortConfig {
                id: *id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 0xff, *id as u8]),
                vlan: vlan.clone(),
            });
        }
        Arc::new(c)
    }

    fn three_ports() -> Arc<Config> {
        config(&[(1, VlanMode::All), (2, VlanMode::All), (3, VlanMode::All)])
    }

    fn key(in_port: PortId, src: u64, dst: u64) -> FlowKey {
        FlowKey {
            in_port,
            dl_src: src,
            dl_dst: dst,
            dl_type: 0x0800,
            ..FlowKey::default()
        }
    }

    const A: u64 = 0x02_00_00_00_00_0a;
    const B: u64 = 0x02_00_00_00_00_0b;
    const BCAST: u64 = 0xffff_ffff_ffff;

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let mut p = Pipeline::new(three_ports(), 64);
        let d = p.decide(&key(1, A, B), 0).clone();
        assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 1 }]);
        let d = p.decide(&key(2, B, A), 1).clone();
        assert_eq!(
            d.steps(),
            &[Step::Output {
                port: 1,
                tag: Some(EgressTag::Untagged)
            }]
        );
        // B is now known: A -> B must stop flooding even though that flow was cached.
        let d = p.decide(&key(1, A, B), 2).clone();
        assert_eq!(
            d.steps(),
            &[Step::Output {
                port: 2,
                tag: Some(EgressTag::Untagged)
            }]
        );
        assert_eq!(p.decide(&key(1, A, B), 3).steps().len(), 1);
        assert!(p.stats().cache_hits >= 1);
    }

    #[test]
    fn broadcast_floods_in_vlan() {
        let mut p = Pipeline::new(three_ports(), 64);
        let d = p.decide(&key(3, A, BCAST), 0);
        assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 3 }]);
        let targets: Vec<_> = p.config().flood_targets(0, 3).map(|t| t.0).collect();
        assert_eq!(targets, vec![1, 2]);
    }

    #[test]
    fn moved_mac_invalidates_cached_decisions() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide(&key(1, A, B), 0);
        p.decide(&key(2, B, A), 0);
        assert_eq!(
            p.decide(&key(1, A, B), 0).steps()[0],
            Step::Output {
                port: 2,
                tag: Some(EgressTag::Untagged)
            }
        );
        // B moves to port 3.
        p.decide(&key(3, B, A), 1);
        assert_eq!(
            p.decide(&key(1, A, B), 2).steps()[0],
            Step::Output {
                port: 3,
                tag: Some(EgressTag::Untagged)
            }
        );
        // And back to port 2, whose old flow B -> A is still in the cache: it must not hide
        // the move.
        p.decide(&key(2, B, A), 3);
        assert_eq!(p.mac_table().lookup(0, B), Some(2));
    }

    #[test]
    fn same_port_destination_is_dropped() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide(&key(1, B, A), 0);
        let d = p.decide(&key(1, A, B), 0);
        assert_eq!(d.drop_reason(), Some(DropReason::SamePort));
    }

    #[test]
    fn cached_flows_keep_sources_fresh_and_quiet_ones_age_out() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide(&key(1, A, B), 0);
        p.decide(&key(2, B, A), 0);
        // A keeps sending through the cache for 400 s; B goes quiet.
        for t in 1..=400 {
            p.decide(&key(1, A, B), t * S);
            p.tick(t * S);
        }
        assert_eq!(p.mac_table().lookup(0, A), Some(1));
        assert_eq!(p.mac_table().lookup(0, B), None, "B aged out");
        assert!(p.stats().macs_expired >= 1);
        // With B gone, A -> B floods again.
        assert!(matches!(
            p.decide(&key(1, A, B), 401 * S).steps()[0],
            Step::Flood { .. }
        ));
    }

    #[test]
    fn config_change_invalidates() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide(&key(2, B, A), 0);
        assert!(matches!(
            p.decide(&key(1, A, B), 0).steps()[0],
            Step::Output { port: 2, .. }
        ));
        // Port 2 leaves.
        p.set_config(config(&[(1, VlanMode::All), (3, VlanMode::All)]));
        assert_eq!(p.mac_table().lookup(0, B), None);
        assert!(matches!(
            p.decide(&key(1, A, B), 1).steps()[0],
            Step::Flood { .. }
        ));
    }

    #[test]
    fn vlans_are_separate() {
        let cfg = config(&[
            (1, VlanMode::Access(10)),
            (2, VlanMode::Access(20)),
            (
                3,
                VlanMode::Trunk {
                    allowed: vec![10, 20],
                    native: None,
                },
            ),
        ]);
        let mut p = Pipeline::new(cfg, 64);
        let d = p.decide(&key(1, A, BCAST), 0);
        assert_eq!(
            d.steps(),
            &[Step::Flood {
                vlan: 10,
                except: 1
            }]
        );
        let targets: Vec<_> = p.config().flood_targets(10, 1).collect();
        assert_eq!(targets, vec![(3, EgressTag::Tagged(10))]);
        // A tagged frame on an access port is dropped.
        let mut tagged = key(1, A, B);
        tagged.vlan = crate::key::VLAN_PRESENT | 10;
        assert_eq!(
            p.decide(&tagged, 0).drop_reason(),
            Some(DropReason::VlanFiltered)
        );
        // A learned in VLAN 10 is unknown in VLAN 20.
        let mut from_trunk = key(3, B, A);
        from_trunk.vlan = crate::key::VLAN_PRESENT | 20;
        assert!(matches!(
            p.decide(&from_trunk, 0).steps()[0],
            Step::Flood { vlan: 20, .. }
        ));
    }

    #[test]
    fn events_replicate_learning() {
        let mut a = Pipeline::new(three_ports(), 64);
        let mut b = Pipeline::new(three_ports(), 64);
        a.decide(&key(1, A, BCAST), 5);
        let events: Vec<_> = a.take_events().collect();
        assert_eq!(
            events,
            vec![MacEvent {
                vlan: 0,
                mac: A,
                port: 1,
                seen: 5
            }]
        );
        for e in &events {
            b.apply_event(e);
        }
        assert!(matches!(
            b.decide(&key(2, B, A), 6).steps()[0],
            Step::Output { port: 1, .. }
        ));
    }
}
