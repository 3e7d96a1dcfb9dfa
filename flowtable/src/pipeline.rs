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

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::Arc;

use crate::action::{Decision, DropReason, Step};
use crate::cache::FlowCache;
use crate::config::Config;
use crate::key::FlowKey;
use crate::mac_table::{Learned, MacKey, MacTable};
use crate::neighbor::{self, NeighborTable, Solicitation};
use crate::port::{EgressTag, PortId};
use crate::rule::{Action, Rule};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress, arp, l4};

const DEP_BUCKETS: usize = 1024;
/// Most dependencies one decision records (source and destination MAC, next hop, its MAC).
pub const MAX_DEPS: usize = 4;
/// How often [`Pipeline::tick`] sweeps the cache and ages the tables.
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

/// Something one worker learned that the others must learn too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A MAC address seen on a port.
    Mac(MacEvent),
    /// A neighbor resolved.
    Neighbor {
        /// Its IP address.
        ip: IpAddr,
        /// Its MAC address.
        mac: EthernetAddress,
        /// The port it answered on.
        port: PortId,
        /// Its internal VLAN.
        vlan: u16,
        /// When.
        seen: u64,
    },
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
    /// Neighbor solicitations asked for.
    pub solicitations: u64,
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
    deps: [Option<Dep>; MAX_DEPS],
    /// The source this flow would have learned: (VLAN, MAC, port).
    learn: Option<(u16, u64, PortId)>,
    packets: u64,
    bytes: u64,
}

/// What a decision depended on, to cache it safely.
#[derive(Debug, Default)]
struct Resolution {
    deps: [Option<u16>; MAX_DEPS],
    learn: Option<(u16, u64, PortId)>,
    /// The packet taught the pipeline something (a neighbor): decide every such packet
    /// again so that each one teaches.
    uncacheable: bool,
}

impl Resolution {
    fn depend(&mut self, bucket: u16) {
        if let Some(slot) = self.deps.iter_mut().find(|d| d.is_none_or(|b| b == bucket)) {
            *slot = Some(bucket);
        } else {
            // More dependencies than we track: do not cache.
            self.uncacheable = true;
        }
    }

    fn merge(&mut self, other: Resolution) {
        for bucket in other.deps.into_iter().flatten() {
            self.depend(bucket);
        }
        self.learn = self.learn.or(other.learn);
        self.uncacheable |= other.uncacheable;
    }
}

/// What a decision computed from the tables depended on: for a second-level cache (the
/// kernel's) that must be invalidated exactly as this pipeline's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// Generation buckets of the MACs and next hops looked up.
    pub deps: [Option<u16>; MAX_DEPS],
    /// The source the flow teaches: (VLAN, MAC, port).
    pub learn: Option<(u16, u64, PortId)>,
    /// Whether the decision may be cached at all.
    pub cacheable: bool,
    /// The count of dependency changes when the decision was made: changes reported by
    /// [`Pipeline::take_invalidations`] with a higher count came after it.
    pub seq: u64,
}

/// Where a decision is kept: in a cache slot, or in the pipeline's slot for decisions that
/// must not be cached.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Cache(usize),
    Uncached,
}

/// The forwarding pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    config: Arc<Config>,
    config_generation: u32,
    mac_table: MacTable,
    neighbors: NeighborTable,
    cache: FlowCache<CacheEntry>,
    generations: Vec<u32>,
    events: Vec<Event>,
    solicitations: Vec<Solicitation>,
    /// Packets and bytes of rules, from cache entries already gone.
    rule_counts: HashMap<u32, (u64, u64), ahash::RandomState>,
    changed_scratch: Vec<(MacKey, PortId)>,
    /// The last decision that must not be cached, lent to the caller.
    uncached: Decision,
    /// Whether decisions are cached at all (off: the reference pipeline of the tests).
    caching: bool,
    /// What the last miss depended on.
    last_miss: Option<Miss>,
    /// Record the buckets that change, for a second-level cache to follow.
    track_invalidations: bool,
    invalidated: Vec<(u16, u64)>,
    /// The count of the last change when too many changed to list.
    invalidated_all: Option<u64>,
    change_seq: u64,
    last_sweep: u64,
    stats: PipelineStats,
}

fn bucket(vlan: u16, mac: u64) -> u16 {
    let mixed = (mac ^ (u64::from(vlan) << 48)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 54) as u16 % DEP_BUCKETS as u16
}

fn ip_bucket(ip: IpAddr) -> u16 {
    let bits = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let folded = (bits as u64) ^ ((bits >> 64) as u64) ^ 0x5bd1_e995;
    (folded.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 54) as u16 % DEP_BUCKETS as u16
}

fn ipv4(word: u128) -> IpAddr {
    IpAddr::V4((word as u32).into())
}

fn src_ip(key: &FlowKey) -> Option<IpAddr> {
    match key.dl_type {
        EtherType::IPV4 | EtherType::ARP => Some(ipv4(key.nw_src)),
        EtherType::IPV6 => Some(IpAddr::V6(key.nw_src.into())),
        _ => None,
    }
}

impl Pipeline {
    /// A pipeline with an empty cache of `cache_capacity` slots and empty tables.
    pub fn new(config: Arc<Config>, cache_capacity: usize) -> Pipeline {
        Pipeline {
            mac_table: MacTable::new(config.mac_capacity, config.mac_max_age_ns),
            neighbors: NeighborTable::default(),
            config,
            config_generation: 0,
            cache: FlowCache::new(cache_capacity),
            generations: vec![0; DEP_BUCKETS],
            events: Vec::new(),
            solicitations: Vec::new(),
            rule_counts: HashMap::with_hasher(ahash::RandomState::with_seeds(3, 1, 4, 1)),
            changed_scratch: Vec::new(),
            uncached: Decision::drop(DropReason::Rule),
            caching: true,
            last_miss: None,
            track_invalidations: false,
            invalidated: Vec::new(),
            invalidated_all: None,
            change_seq: 0,
            last_sweep: 0,
            stats: PipelineStats::default(),
        }
    }

    /// Turns the flow cache off (every packet is decided from the tables, as a reference for
    /// tests) or back on.
    pub fn set_caching(&mut self, on: bool) {
        self.caching = on;
        self.cache.clear();
    }

    /// The configuration decisions are made by.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Switches to a new configuration. Every cached decision becomes stale; what was learned
    /// on ports that no longer exist is forgotten.
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
            self.neighbors.flush_port(port);
        }
        self.config = config;
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    /// The MAC table replica of this pipeline.
    pub fn mac_table(&self) -> &MacTable {
        &self.mac_table
    }

    /// The neighbor table of this pipeline.
    pub fn neighbors(&self) -> &NeighborTable {
        &self.neighbors
    }

    /// Counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// The number of entries in the flow cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Packets and bytes each rule decided so far, by rule id.
    pub fn rule_stats(&self) -> HashMap<u32, (u64, u64)> {
        let mut stats: HashMap<u32, (u64, u64)> =
            self.rule_counts.iter().map(|(&k, &v)| (k, v)).collect();
        for (_, entry, _) in self.cache.iter() {
            if let Some(rule) = entry.decision.rule() {
                let s = stats.entry(rule).or_default();
                s.0 += entry.packets;
                s.1 += entry.bytes;
            }
        }
        stats
    }

    fn fold_counts(&mut self, entry: &CacheEntry) {
        if let Some(rule) = entry.decision.rule() {
            let s = self.rule_counts.entry(rule).or_default();
            s.0 += entry.packets;
            s.1 += entry.bytes;
        }
    }

    /// Decides what to do with a packet of flow `key`, `len` bytes long.
    pub fn decide(&mut self, key: &FlowKey, len: u32, now: u64) -> &Decision {
        self.decide_detailed(key, len, now).0
    }

    /// [`decide`](Self::decide), also saying what the decision depended on when it was
    /// computed from the tables rather than served by the cache.
    pub fn decide_detailed(
        &mut self,
        key: &FlowKey,
        len: u32,
        now: u64,
    ) -> (&Decision, Option<Miss>) {
        let at = self.decide_at(key, len, now);
        let miss = self.last_miss.take();
        let decision = match at {
            Slot::Cache(i) => &self.cache.entry(i).decision,
            Slot::Uncached => &self.uncached,
        };
        (decision, miss)
    }

    /// Decides, and says where the decision is kept.
    fn decide_at(&mut self, key: &FlowKey, len: u32, now: u64) -> Slot {
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
        let (decision, resolution) = self.resolve(key, now);
        self.last_miss = Some(Miss {
            deps: resolution.deps,
            learn: resolution.learn,
            cacheable: !resolution.uncacheable,
            seq: self.change_seq,
        });
        if resolution.uncacheable || !self.caching {
            // The packet taught us something (a neighbor): decide the next one afresh too.
            if let Some(rule) = decision.rule() {
                let s = self.rule_counts.entry(rule).or_default();
                s.0 += 1;
                s.1 += u64::from(len);
            }
            self.uncached = decision;
            return Slot::Uncached;
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
            packets: 1,
            bytes: u64::from(len),
        };
        let (i, old) = self.cache.insert(*key, entry, now);
        if let Some(old) = old {
            self.fold_counts(&old);
        }
        Slot::Cache(i)
    }

    /// Computes a decision from the tables, learning on the way.
    fn resolve(&mut self, key: &FlowKey, now: u64) -> (Decision, Resolution) {
        let config = self.config.clone();
        match config.rules.lookup(key) {
            Some(rule) => self.apply_rule(&config, rule, key, now),
            // No rule, or no rule that matches: the switch is a learning bridge.
            None => self.normal(&config, key, now),
        }
    }

    /// Turns a rule's actions into steps, running `normal` and `route` where they appear.
    fn apply_rule(
        &mut self,
        config: &Config,
        rule: &Rule,
        key: &FlowKey,
        now: u64,
    ) -> (Decision, Resolution) {
        let mut resolution = Resolution::default();
        let mut steps = Vec::with_capacity(rule.actions.len() + 2);
        let mut inner_drop = None;
        for action in &rule.actions {
            let inner = match *action {
                Action::Output(port) => {
                    steps.push(Step::Output { port, tag: None });
                    continue;
                }
                Action::Flood => {
                    steps.push(Step::FloodAll {
                        except: key.in_port,
                    });
                    continue;
                }
                Action::Drop => {
                    return (
                        Decision::drop(DropReason::Rule).with_rule(Some(rule.id)),
                        resolution,
                    );
                }
                Action::SetDlSrc(mac) => {
                    steps.push(Step::SetEthSrc(mac));
                    continue;
                }
                Action::SetDlDst(mac) => {
                    steps.push(Step::SetEthDst(mac));
                    continue;
                }
                Action::SetVlanVid(vid) => {
                    steps.push(Step::SetVlanVid(vid));
                    continue;
                }
                Action::StripVlan => {
                    steps.push(Step::StripVlan);
                    continue;
                }
                Action::PushVlan(vid) => {
                    steps.push(Step::PushVlan(vid));
                    continue;
                }
                Action::DecTtl => {
                    steps.push(Step::DecTtl);
                    continue;
                }
                Action::Normal => self.normal(config, key, now),
                Action::Route => self.route_action(config, key, now),
            };
            let (decision, inner_resolution) = inner;
            resolution.merge(inner_resolution);
            steps.extend_from_slice(decision.steps());
            inner_drop = inner_drop.or(decision.drop_reason());
        }
        let mut decision = Decision::from_steps(&steps);
        if let (Some(_), Some(reason)) = (decision.drop_reason(), inner_drop) {
            decision = Decision::drop(reason);
        }
        (decision.with_rule(Some(rule.id)), resolution)
    }

    /// The `route` action: the packet enters the L3 pipeline whatever its destination MAC.
    fn route_action(&mut self, config: &Config, key: &FlowKey, now: u64) -> (Decision, Resolution) {
        let resolution = Resolution::default();
        let Some(vlan) = config
            .port(key.in_port)
            .and_then(|p| p.vlan.ingress(key.vlan_id().filter(|&v| v != 0)))
        else {
            return (Decision::drop(DropReason::VlanFiltered), resolution);
        };
        let iface = config
            .interfaces()
            .iter()
            .position(|i| i.serves(vlan, key.in_port));
        self.l3(config, key, vlan, iface, now, resolution)
    }

    /// The L2 learning switch: learn the source, forward to the learned port of the
    /// destination, flood broadcast, multicast and unknown unicast in the frame's VLAN; hand
    /// frames for a router interface's MAC to the L3 pipeline.
    fn normal(&mut self, config: &Config, key: &FlowKey, now: u64) -> (Decision, Resolution) {
        let mut resolution = Resolution::default();
        let Some(in_port) = config.port(key.in_port) else {
            return (Decision::drop(DropReason::Malformed), resolution);
        };
        let Some(vlan) = in_port.vlan.ingress(key.vlan_id().filter(|&v| v != 0)) else {
            return (Decision::drop(DropReason::VlanFiltered), resolution);
        };
        let src = EthernetAddress::from_u64(key.dl_src);
        if src.is_unicast() {
            self.learn_local(vlan, key.dl_src, key.in_port, now);
            resolution.depend(bucket(vlan, key.dl_src));
            resolution.learn = Some((vlan, key.dl_src, key.in_port));
        }
        let dst = EthernetAddress::from_u64(key.dl_dst);
        if let Some(iface) = config.router_by_mac(vlan, dst, key.in_port) {
            return self.l3(config, key, vlan, Some(iface), now, resolution);
        }
        if dst.is_multicast() {
            if let Some(reply) = self.answer_multicast(config, key, vlan, now, &mut resolution) {
                return (reply, resolution);
            }
            let flood = Decision::from_steps(&[Step::Flood {
                vlan,
                except: key.in_port,
            }]);
            return (flood, resolution);
        }
        resolution.depend(bucket(vlan, key.dl_dst));
        let decision = match self.mac_table.lookup(vlan, key.dl_dst) {
            None => Decision::from_steps(&[Step::Flood {
                vlan,
                except: key.in_port,
            }]),
            Some(port) if port == key.in_port => Decision::drop(DropReason::SamePort),
            Some(port) => match config.port(port).and_then(|p| p.vlan.egress(vlan)) {
                Some(tag) => Decision::output(port, Some(tag)),
                // Learned on a port that has since left the VLAN: treat as unknown.
                None => Decision::from_steps(&[Step::Flood {
                    vlan,
                    except: key.in_port,
                }]),
            },
        };
        (decision, resolution)
    }

    /// A reply that goes back out of the ingress port: `edit` then output.
    fn reply(config: &Config, key: &FlowKey, vlan: u16, edit: Step) -> Decision {
        let tag = config
            .port(key.in_port)
            .and_then(|p| p.vlan.egress(vlan))
            .unwrap_or(EgressTag::Untagged);
        Decision::from_steps(&[
            edit,
            Step::Output {
                port: key.in_port,
                tag: Some(tag),
            },
        ])
    }

    /// ARP requests and neighbor solicitations for a router address arrive broadcast or
    /// multicast: answer them instead of flooding.
    fn answer_multicast(
        &mut self,
        config: &Config,
        key: &FlowKey,
        vlan: u16,
        now: u64,
        resolution: &mut Resolution,
    ) -> Option<Decision> {
        if key.dl_type == EtherType::ARP && u16::from(key.nw_proto) == arp::OP_REQUEST {
            let iface = config.router_by_ip(vlan, ipv4(key.nw_dst), key.in_port)?;
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            let mac = config.interfaces()[iface].mac;
            return Some(Self::reply(config, key, vlan, Step::ArpReply(mac)));
        }
        if key.dl_type == EtherType::IPV6
            && key.nw_proto == Protocol::ICMPV6
            && key.tp_src == u16::from(l4::ICMPV6_NEIGHBOR_SOLICIT)
        {
            // The solicited-node group carries the low 24 bits of the target.
            let low = key.nw_dst & 0x00ff_ffff;
            let iface = config.interfaces().iter().find(|i| {
                i.serves(vlan, key.in_port)
                    && i.addrs.iter().any(|(a, _)| match a {
                        IpAddr::V6(a) => u128::from(*a) & 0x00ff_ffff == low,
                        IpAddr::V4(_) => false,
                    })
            })?;
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            return Some(Self::reply(
                config,
                key,
                vlan,
                Step::NeighborAdvert(iface.mac),
            ));
        }
        None
    }

    /// Learns the sender of an ARP or ND packet as a neighbor.
    fn learn_neighbor_from(&mut self, key: &FlowKey, vlan: u16, now: u64) {
        let Some(ip) = src_ip(key) else { return };
        if ip.is_unspecified() {
            return;
        }
        let mac = EthernetAddress::from_u64(key.dl_src);
        self.learn_neighbor(ip, mac, key.in_port, vlan, now, true);
    }

    fn learn_neighbor(
        &mut self,
        ip: IpAddr,
        mac: EthernetAddress,
        port: PortId,
        vlan: u16,
        now: u64,
        local: bool,
    ) {
        if self.neighbors.learn(ip, mac, port, vlan, now) {
            self.bump_bucket(ip_bucket(ip));
        }
        if local {
            self.events.push(Event::Neighbor {
                ip,
                mac,
                port,
                vlan,
                seen: now,
            });
        }
    }

    /// The L3 pipeline: traffic for the router itself (ARP, ND, ping), then forwarding by
    /// longest prefix match to a resolved next hop, rewriting the MACs and decrementing the
    /// TTL. `iface` is the router interface the packet was addressed to, if any.
    fn l3(
        &mut self,
        config: &Config,
        key: &FlowKey,
        vlan: u16,
        iface: Option<usize>,
        now: u64,
        mut resolution: Resolution,
    ) -> (Decision, Resolution) {
        let router_mac = iface.map(|i| config.interfaces()[i].mac);
        let for_router = |reason| (Decision::drop(reason), Resolution::default());
        match key.dl_type {
            EtherType::ARP => {
                resolution.uncacheable = true;
                let op = u16::from(key.nw_proto);
                let target = ipv4(key.nw_dst);
                if op == arp::OP_REQUEST
                    && let (Some(mac), Some(_)) =
                        (router_mac, config.router_by_ip(vlan, target, key.in_port))
                {
                    self.learn_neighbor_from(key, vlan, now);
                    return (
                        Self::reply(config, key, vlan, Step::ArpReply(mac)),
                        resolution,
                    );
                }
                if op == arp::OP_REPLY && config.router_by_ip(vlan, target, key.in_port).is_some() {
                    self.learn_neighbor_from(key, vlan, now);
                }
                return (Decision::drop(DropReason::ToRouter), resolution);
            }
            EtherType::IPV4 | EtherType::IPV6 => {}
            _ => return for_router(DropReason::NoRoute),
        }
        let Some(dst) = key.ip_dst() else {
            return for_router(DropReason::NoRoute);
        };
        if config.is_router_ip(dst) {
            let Some(mac) = router_mac else {
                return for_router(DropReason::ToRouter);
            };
            let icmp_type = key.tp_src as u8;
            let echo = match dst {
                IpAddr::V4(_) => {
                    key.nw_proto == Protocol::ICMP && icmp_type == l4::ICMP_ECHO_REQUEST
                }
                IpAddr::V6(_) => {
                    key.nw_proto == Protocol::ICMPV6 && icmp_type == l4::ICMPV6_ECHO_REQUEST
                }
            };
            if echo {
                return (
                    Self::reply(config, key, vlan, Step::EchoReply(mac)),
                    resolution,
                );
            }
            if key.nw_proto == Protocol::ICMPV6 {
                resolution.uncacheable = true;
                if icmp_type == l4::ICMPV6_NEIGHBOR_SOLICIT {
                    self.learn_neighbor_from(key, vlan, now);
                    return (
                        Self::reply(config, key, vlan, Step::NeighborAdvert(mac)),
                        resolution,
                    );
                }
                if icmp_type == l4::ICMPV6_NEIGHBOR_ADVERT {
                    self.learn_neighbor_from(key, vlan, now);
                }
            }
            return (Decision::drop(DropReason::ToRouter), resolution);
        }
        if key.dl_type == EtherType::IPV6
            && key.nw_proto == Protocol::ICMPV6
            && key.tp_src == u16::from(l4::ICMPV6_NEIGHBOR_ADVERT)
        {
            // An advertisement answering our solicitation, sent to a router MAC.
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            return (Decision::drop(DropReason::ToRouter), resolution);
        }
        if key.nw_ttl <= 1 {
            return (Decision::drop(DropReason::TtlExceeded), resolution);
        }
        let Some((out_index, next_hop)) = config.route(dst) else {
            return (Decision::drop(DropReason::NoRoute), resolution);
        };
        let out = &config.interfaces()[out_index];
        resolution.depend(ip_bucket(next_hop));
        let Some(neighbor) = self.neighbors.lookup(next_hop).copied() else {
            // Every packet asks again (rate-limited) until the neighbor answers.
            resolution.uncacheable = true;
            self.solicit(config, out_index, next_hop, now);
            return (Decision::drop(DropReason::NoNeighbor), resolution);
        };
        let out_port = match out.port() {
            Some(p) => p,
            None => {
                let mac = neighbor.mac.to_u64();
                resolution.depend(bucket(out.vlan, mac));
                self.mac_table
                    .lookup(out.vlan, mac)
                    .unwrap_or(neighbor.port)
            }
        };
        let Some(tag) = config.port(out_port).and_then(|p| p.vlan.egress(out.vlan)) else {
            return (Decision::drop(DropReason::NoRoute), resolution);
        };
        let steps = [
            Step::SetEthSrc(out.mac),
            Step::SetEthDst(neighbor.mac),
            Step::DecTtl,
            Step::Output {
                port: out_port,
                tag: Some(tag),
            },
        ];
        (Decision::from_steps(&steps), resolution)
    }

    /// Asks (rate-limited) for `target` to be resolved on router interface `index`.
    fn solicit(&mut self, config: &Config, index: usize, target: IpAddr, now: u64) {
        let iface = &config.interfaces()[index];
        let Some(source) = iface.source_for(target) else {
            return;
        };
        if self.neighbors.should_solicit(target, now) {
            self.stats.solicitations += 1;
            self.solicitations.push(Solicitation {
                target,
                source,
                source_mac: iface.mac,
                vlan: iface.vlan,
                port: iface.port(),
            });
        }
    }

    /// The solicitations to send (ARP requests, neighbor solicitations), for the dataplane.
    pub fn take_solicitations(&mut self) -> std::vec::Drain<'_, Solicitation> {
        self.solicitations.drain(..)
    }

    fn bump_bucket(&mut self, b: u16) {
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

    /// Adds packets and bytes that another level (the kernel) forwarded for `rule`.
    pub fn add_rule_counts(&mut self, rule: u32, packets: u64, bytes: u64) {
        let s = self.rule_counts.entry(rule).or_default();
        s.0 += packets;
        s.1 += bytes;
    }

    /// Keeps a source address fresh after another level forwarded its frames at `seen`: like
    /// learning, but only if it is still known on `port`.
    pub fn refresh_source(&mut self, vlan: u16, mac: u64, port: PortId, seen: u64) {
        if self
            .mac_table
            .get(vlan, mac)
            .is_some_and(|e| e.port == port && e.last_seen < seen)
        {
            self.learn_local(vlan, mac, port, seen);
        }
    }

    fn bump(&mut self, vlan: u16, mac: u64) {
        self.bump_bucket(bucket(vlan, mac));
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
            self.events.push(Event::Mac(MacEvent {
                vlan,
                mac,
                port,
                seen: now,
            }));
        }
        self.note(vlan, mac, learned);
    }

    /// Applies what another worker learned.
    pub fn apply_event(&mut self, event: &Event) {
        match *event {
            Event::Mac(e) => {
                if self.config.port(e.port).is_none() {
                    return;
                }
                let learned = self.mac_table.learn(e.vlan, e.mac, e.port, e.seen);
                self.note(e.vlan, e.mac, learned);
            }
            Event::Neighbor {
                ip,
                mac,
                port,
                vlan,
                seen,
            } => {
                if self.config.port(port).is_some() {
                    self.learn_neighbor(ip, mac, port, vlan, seen, false);
                }
            }
        }
    }

    /// What was learned locally since the last call, to send to the other workers.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Periodic work: at most every [`SWEEP_INTERVAL_NS`], refreshes the sources of cached
    /// flows used since the last sweep, ages the MAC and neighbor tables, and re-confirms
    /// neighbors before they expire.
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
            self.refresh_source(vlan, mac, port, used);
        }
        let mut expired = std::mem::take(&mut self.changed_scratch);
        self.mac_table.expire(now, &mut expired);
        for ((vlan, mac), _) in expired.drain(..) {
            self.stats.macs_expired += 1;
            self.bump(vlan, mac);
        }
        self.changed_scratch = expired;
        for ip in self.neighbors.expire(now) {
            self.bump_bucket(ip_bucket(ip));
        }
        let stale: Vec<IpAddr> = self
            .neighbors
            .iter()
            .filter(|(_, n)| now.saturating_sub(n.updated) >= neighbor::REFRESH_NS)
            .map(|(ip, _)| *ip)
            .collect();
        let config = self.config.clone();
        for ip in stale {
            if let Some((index, next_hop)) = config.route(ip)
                && next_hop == ip
            {
                self.solicit(&config, index, ip, now);
            }
        }
    }

    /// Forgets every learned address.
    pub fn flush_mac_table(&mut self) {
        if self.track_invalidations {
            self.change_seq += 1;
            self.invalidated_all = Some(self.change_seq);
        }
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

    impl Pipeline {
        fn decide_t(&mut self, key: &FlowKey, now: u64) -> &Decision {
            self.decide(key, 64, now)
        }
    }

    const A: u64 = 0x02_00_00_00_00_0a;
    const B: u64 = 0x02_00_00_00_00_0b;
    const BCAST: u64 = 0xffff_ffff_ffff;

    #[test]
    fn floods_unknown_then_forwards_learned() {
        let mut p = Pipeline::new(three_ports(), 64);
        let d = p.decide_t(&key(1, A, B), 0).clone();
        assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 1 }]);
        let d = p.decide_t(&key(2, B, A), 1).clone();
        assert_eq!(
            d.steps(),
            &[Step::Output {
                port: 1,
                tag: Some(EgressTag::Untagged)
            }]
        );
        // B is now known: A -> B must stop flooding even though that flow was cached.
        let d = p.decide_t(&key(1, A, B), 2).clone();
        assert_eq!(
            d.steps(),
            &[Step::Output {
                port: 2,
                tag: Some(EgressTag::Untagged)
            }]
        );
        assert_eq!(p.decide_t(&key(1, A, B), 3).steps().len(), 1);
        assert!(p.stats().cache_hits >= 1);
    }

    #[test]
    fn broadcast_floods_in_vlan() {
        let mut p = Pipeline::new(three_ports(), 64);
        let d = p.decide_t(&key(3, A, BCAST), 0);
        assert_eq!(d.steps(), &[Step::Flood { vlan: 0, except: 3 }]);
        let targets: Vec<_> = p.config().flood_targets(0, 3).map(|t| t.0).collect();
        assert_eq!(targets, vec![1, 2]);
    }

    #[test]
    fn moved_mac_invalidates_cached_decisions() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide_t(&key(1, A, B), 0);
        p.decide_t(&key(2, B, A), 0);
        assert_eq!(
            p.decide_t(&key(1, A, B), 0).steps()[0],
            Step::Output {
                port: 2,
                tag: Some(EgressTag::Untagged)
            }
        );
        // B moves to port 3.
        p.decide_t(&key(3, B, A), 1);
        assert_eq!(
            p.decide_t(&key(1, A, B), 2).steps()[0],
            Step::Output {
                port: 3,
                tag: Some(EgressTag::Untagged)
            }
        );
        // And back to port 2, whose old flow B -> A is still in the cache: it must not hide
        // the move.
        p.decide_t(&key(2, B, A), 3);
        assert_eq!(p.mac_table().lookup(0, B), Some(2));
    }

    #[test]
    fn same_port_destination_is_dropped() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide_t(&key(1, B, A), 0);
        let d = p.decide_t(&key(1, A, B), 0);
        assert_eq!(d.drop_reason(), Some(DropReason::SamePort));
    }

    #[test]
    fn cached_flows_keep_sources_fresh_and_quiet_ones_age_out() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide_t(&key(1, A, B), 0);
        p.decide_t(&key(2, B, A), 0);
        // A keeps sending through the cache for 400 s; B goes quiet.
        for t in 1..=400 {
            p.decide_t(&key(1, A, B), t * S);
            p.tick(t * S);
        }
        assert_eq!(p.mac_table().lookup(0, A), Some(1));
        assert_eq!(p.mac_table().lookup(0, B), None, "B aged out");
        assert!(p.stats().macs_expired >= 1);
        // With B gone, A -> B floods again.
        assert!(matches!(
            p.decide_t(&key(1, A, B), 401 * S).steps()[0],
            Step::Flood { .. }
        ));
    }

    #[test]
    fn config_change_invalidates() {
        let mut p = Pipeline::new(three_ports(), 64);
        p.decide_t(&key(2, B, A), 0);
        assert!(matches!(
            p.decide_t(&key(1, A, B), 0).steps()[0],
            Step::Output { port: 2, .. }
        ));
        // Port 2 leaves.
        p.set_config(config(&[(1, VlanMode::All), (3, VlanMode::All)]));
        assert_eq!(p.mac_table().lookup(0, B), None);
        assert!(matches!(
            p.decide_t(&key(1, A, B), 1).steps()[0],
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
        let d = p.decide_t(&key(1, A, BCAST), 0);
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
            p.decide_t(&tagged, 0).drop_reason(),
            Some(DropReason::VlanFiltered)
        );
        // A learned in VLAN 10 is unknown in VLAN 20.
        let mut from_trunk = key(3, B, A);
        from_trunk.vlan = crate::key::VLAN_PRESENT | 20;
        assert!(matches!(
            p.decide_t(&from_trunk, 0).steps()[0],
            Step::Flood { vlan: 20, .. }
        ));
    }

    #[test]
    fn events_replicate_learning() {
        let mut a = Pipeline::new(three_ports(), 64);
        let mut b = Pipeline::new(three_ports(), 64);
        a.decide_t(&key(1, A, BCAST), 5);
        let events: Vec<_> = a.take_events().collect();
        assert_eq!(
            events,
            vec![Event::Mac(MacEvent {
                vlan: 0,
                mac: A,
                port: 1,
                seen: 5
            })]
        );
        for e in &events {
            b.apply_event(e);
        }
        assert!(matches!(
            b.decide_t(&key(2, B, A), 6).steps()[0],
            Step::Output { port: 1, .. }
        ));
    }

    mod rules_and_routing {
        use super::*;
        use crate::config::Binding;
        use crate::flow_spec::parse_flow;
        use crate::neighbor::Solicitation;

        fn with_rules(specs: &[&str]) -> Arc<Config> {
            let mut c = (*three_ports()).clone();
            for (id, spec) in specs.iter().enumerate() {
                let rule = parse_flow(spec, &|_| None)
                    .unwrap()
                    .into_rule(id as u32 + 1);
                c.rules.insert(rule);
            }
            Arc::new(c)
        }

        fn ip_key(
            in_port: PortId,
            src: u64,
            dst: u64,
            nw_src: [u8; 4],
            nw_dst: [u8; 4],
        ) -> FlowKey {
            FlowKey {
                nw_src: u128::from(u32::from_be_bytes(nw_src)),
                nw_dst: u128::from(u32::from_be_bytes(nw_dst)),
                nw_proto: 1,
                nw_ttl: 64,
                tp_src: 8,
                ..key(in_port, src, dst)
            }
        }

        #[test]
        fn drop_rule_priorities_and_counts() {
            let cfg = with_rules(&[
                "priority=100,icmp,nw_dst=10.0.0.2,actions=drop",
                "priority=200,icmp,nw_src=10.0.0.9,actions=normal",
            ]);
            let mut p = Pipeline::new(cfg, 64);
            p.decide(&key(2, B, BCAST), 64, 0);
            let k = ip_key(1, A, B, [10, 0, 0, 1], [10, 0, 0, 2]);
            for t in 0..5 {
                let d = p.decide(&k, 100, t);
                assert_eq!(d.drop_reason(), Some(DropReason::Rule));
                assert_eq!(d.rule(), Some(1));
            }
            // The higher priority rule wins where both match.
            let k9 = ip_key(1, A, B, [10, 0, 0, 9], [10, 0, 0, 2]);
            let d = p.decide(&k9, 100, 6).clone();
            assert_eq!(d.rule(), Some(2));
            assert!(matches!(d.steps()[0], Step::Output { port: 2, .. }));
            // Traffic no rule matches is switched normally, and counts nowhere.
            let other = key(1, A, B);
            assert!(p.decide(&other, 60, 7).rule().is_none());
            let stats = p.rule_stats();
            assert_eq!(stats[&1], (5, 500));
            assert_eq!(stats[&2], (1, 100));
            assert!(!stats.contains_key(&3));
        }

        #[test]
        fn actions_compose() {
            let cfg =
                with_rules(&["priority=10,actions=mod_dl_src:02:00:00:00:00:99,output:3,normal"]);
            let mut p = Pipeline::new(cfg, 64);
            p.decide(&key(2, B, BCAST), 64, 0);
            let d = p.decide(&key(1, A, B), 64, 1);
            assert_eq!(
                d.steps(),
                &[
                    Step::SetEthSrc(EthernetAddress([2, 0, 0, 0, 0, 0x99])),
                    Step::Output { port: 3, tag: None },
                    Step::Output {
                        port: 2,
                        tag: Some(EgressTag::Untagged)
                    },
                ]
            );
        }

        const ROUTER: [u8; 4] = [10, 1, 0, 254];

        /// Port 1 in VLAN 10 (10.1.0.0/24), ports 2 and 3 in VLAN 20 (10.2.0.0/24).
        fn routed() -> (Arc<Config>, EthernetAddress, EthernetAddress) {
            let mut c = (*config(&[
                (1, VlanMode::Access(10)),
                (2, VlanMode::Access(20)),
                (3, VlanMode::Access(20)),
            ]))
            .clone();
            c.add_address(Binding::Vlan(10), "10.1.0.254".parse().unwrap(), 24, None)
                .unwrap();
            c.add_address(Binding::Vlan(20), "10.2.0.254".parse().unwrap(), 24, None)
                .unwrap();
            let m10 = c.interfaces()[0].mac;
            let m20 = c.interfaces()[1].mac;
            (Arc::new(c), m10, m20)
        }

        fn arp(in_port: PortId, src: u64, dst: u64, op: u8, spa: [u8; 4], tpa: [u8; 4]) -> FlowKey {
            FlowKey {
                dl_type: EtherType::ARP,
                nw_proto: op,
                ..ip_key(in_port, src, dst, spa, tpa)
            }
        }

        #[test]
        fn router_answers_arp_and_ping_and_routes_after_resolving() {
            let (cfg, m10, m20) = routed();
            let mut p = Pipeline::new(cfg, 64);
            // A (10.1.0.1, port 1) asks for its gateway.
            let d = p
                .decide(&arp(1, A, BCAST, 1, [10, 1, 0, 1], ROUTER), 60, 0)
                .clone();
            assert_eq!(d.steps()[0], Step::ArpReply(m10));
            assert!(matches!(d.steps()[1], Step::Output { port: 1, .. }));
            // A pings the gateway.
            let d = p
                .decide(&ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], ROUTER), 98, 1)
                .clone();
            assert_eq!(d.steps()[0], Step::EchoReply(m10));
            // A pings B (10.2.0.2, behind port 3) across the router: B is unresolved.
            let to_b = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [10, 2, 0, 2]);
            assert_eq!(
                p.decide(&to_b, 98, 2).drop_reason(),
                Some(DropReason::NoNeighbor)
            );
            let sol: Vec<Solicitation> = p.take_solicitations().collect();
            assert_eq!(sol.len(), 1);
            assert_eq!(sol[0].target, "10.2.0.2".parse::<IpAddr>().unwrap());
            assert_eq!(sol[0].source, "10.2.0.254".parse::<IpAddr>().unwrap());
            assert_eq!(
                (sol[0].vlan, sol[0].port, sol[0].source_mac),
                (20, None, m20)
            );
            // Rate-limited: no second request within a second.
            p.decide(&to_b, 98, 3);
            assert_eq!(p.take_solicitations().count(), 0);
            // B answers on port 3.
            let reply = arp(3, B, m20.to_u64(), 2, [10, 2, 0, 2], [10, 2, 0, 254]);
            assert_eq!(
                p.decide(&reply, 60, 4).drop_reason(),
                Some(DropReason::ToRouter)
            );
            // Now the packet is routed: MACs rewritten, TTL decremented, out of port 3.
            let d = p.decide(&to_b, 98, 5).clone();
            assert_eq!(
                d.steps(),
                &[
                    Step::SetEthSrc(m20),
                    Step::SetEthDst(EthernetAddress::from_u64(B)),
                    Step::DecTtl,
                    Step::Output {
                        port: 3,
                        tag: Some(EgressTag::Untagged)
                    },
                ]
            );
            // TTL 1 dies at the router; no route is dropped.
            let mut dying = to_b;
            dying.nw_ttl = 1;
            assert_eq!(
                p.decide(&dying, 98, 6).drop_reason(),
                Some(DropReason::TtlExceeded)
            );
            let nowhere = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [192, 0, 2, 1]);
            assert_eq!(
                p.decide(&nowhere, 98, 7).drop_reason(),
                Some(DropReason::NoRoute)
            );
            // B moves to port 2: the routed flow follows the MAC table.
            p.decide(&key(2, B, BCAST), 60, 8);
            assert!(matches!(
                p.decide(&to_b, 98, 9).steps()[3],
                Step::Output { port: 2, .. }
            ));
        }

        #[test]
        fn static_routes_go_through_their_next_hop() {
            let (cfg, m10, m20) = routed();
            let mut c = (*cfg).clone();
            c.add_route(
                "10.30.0.0".parse().unwrap(),
                16,
                "10.2.0.2".parse().unwrap(),
            )
            .unwrap();
            let mut p = Pipeline::new(Arc::new(c), 64);
            p.decide(
                &arp(3, B, m20.to_u64(), 2, [10, 2, 0, 2], [10, 2, 0, 254]),
                60,
                0,
            );
            let far = ip_key(1, A, m10.to_u64(), [10, 1, 0, 1], [10, 30, 1, 1]);
            let d = p.decide(&far, 98, 1);
            assert_eq!(d.steps()[1], Step::SetEthDst(EthernetAddress::from_u64(B)));
        }
    }

    mod coherence {
        use proptest::prelude::*;

        use super::*;
        use crate::flow_spec::parse_flow;

        const MACS: [u64; 4] = [A, B, 0x02_00_00_00_00_0c, 0x02_00_00_00_00_0d];

        #[derive(Debug, Clone)]
        enum Op {
            Packet {
                in_port: PortId,
                src: usize,
                dst: Option<usize>,
                vlan: Option<u16>,
                ip: u8,
            },
            AddRule(String),
            ClearRules,
            SetVlan(PortId, VlanMode),
            RemovePort(PortId),
            AddPort(PortId),
            FlushFdb,
            Tick(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            let vlan_mode = prop_oneof![
                Just(VlanMode::All),
                Just(VlanMode::Access(10)),
                Just(VlanMode::Access(20)),
                Just(VlanMode::Trunk {
                    allowed: vec![10, 20],
                    native: None
                }),
            ];
            let spec = (
                0u8..3,
                1u8..4,
                1u16..4,
                prop_oneof![
                    Just("drop".to_owned()),
                    Just("normal".to_owned()),
                    (1u16..4).prop_map(|p| format!("output:{p}")),
                    Just("flood".to_owned()),
                ],
            )
                .prop_map(|(field, ip, prio, action)| {
                    let matcher = match field {
                        0 => format!("ip,nw_dst=10.0.0.{ip}"),
                        1 => format!("in_port={}", ip),
                        _ => format!(
                            "dl_dst={}",
                            EthernetAddress::from_u64(MACS[usize::from(ip) % 4])
                        ),
                    };
                    format!("priority={prio},{matcher},actions={action}")
                });
            // Few hosts, mostly at home, mostly untagged: flows repeat, so cached decisions
            // are actually reused after the changes in between.
            let packet = (
                0usize..4,
                proptest::option::of(0usize..4),
                prop_oneof![9 => Just(None), 1 => (1u16..4).prop_map(Some)],
                prop_oneof![8 => Just(None), 1 => Just(Some(10u16)), 1 => Just(Some(20u16))],
            )
                .prop_map(|(src, dst, moved, vlan)| Op::Packet {
                    in_port: moved.unwrap_or(src as u16 % 3 + 1),
                    src,
                    dst,
                    vlan,
                    ip: dst.map_or(9, |d| d as u8 + 1),
                });
            prop_oneof![
                30 => packet,
                1 => spec.prop_map(Op::AddRule),
                1 => Just(Op::ClearRules),
                1 => (1u16..4, vlan_mode).prop_map(|(p, m)| Op::SetVlan(p, m)),
                1 => (1u16..4).prop_map(Op::RemovePort),
                1 => (1u16..4).prop_map(Op::AddPort),
                1 => Just(Op::FlushFdb),
                1 => (1u64..3_000_000_000).prop_map(Op::Tick),
            ]
        }

        proptest! {
            /// Whatever happens between packets, the cached pipeline decides exactly what a
            /// pipeline without a cache decides.
            #[test]
            fn cached_decisions_equal_uncached(ops in proptest::collection::vec(op(), 1..200)) {
                let mut cfg = (*three_ports()).clone();
                let mut cached = Pipeline::new(Arc::new(cfg.clone()), 1024);
                let mut reference = Pipeline::new(Arc::new(cfg.clone()), 1024);
                reference.set_caching(false);
                let mut now = 0u64;
                let mut next_rule = 1;
                for op in ops {
                    let publish = |cfg: &Config, a: &mut Pipeline, b: &mut Pipeline| {
                        a.set_config(Arc::new(cfg.clone()));
                        b.set_config(Arc::new(cfg.clone()));
                    };
                    match op {
                        Op::Packet { in_port, src, dst, vlan, ip } => {
                            let mut k = key(in_port, MACS[src], dst.map_or(BCAST, |d| MACS[d]));
                            k.vlan = vlan.map_or(0, |v| crate::key::VLAN_PRESENT | v);
                            k.nw_dst = u128::from(u32::from_be_bytes([10, 0, 0, ip]));
                            now += 1000;
                            let got = cached.decide(&k, 64, now).clone();
                            let want = reference.decide(&k, 64, now).clone();
                            prop_assert_eq!(got.steps(), want.steps());
                            prop_assert_eq!(got.drop_reason(), want.drop_reason());
                            prop_assert_eq!(got.rule(), want.rule());
                        }
                        Op::AddRule(spec) => {
                            let rule = parse_flow(&spec, &|_| None).unwrap().into_rule(next_rule);
                            next_rule += 1;
                            cfg.rules.insert(rule);
                            publish(&cfg, &mut cached, &mut reference);
                        }
                        Op::ClearRules => {
                            cfg.rules.clear();
                            publish(&cfg, &mut cached, &mut reference);
                        }
                        Op::SetVlan(p, mode) => {
                            if let Some(mut port) = cfg.port(p).cloned() {
                                port.vlan = mode;
                                cfg.set_port(port);
                                publish(&cfg, &mut cached, &mut reference);
                            }
                        }
                        Op::RemovePort(p) => {
                            cfg.remove_port(p);
                            publish(&cfg, &mut cached, &mut reference);
                        }
                        Op::AddPort(p) => {
                            if cfg.port(p).is_none() {
                                cfg.set_port(PortConfig {
                                    id: p,
                                    name: format!("p{p}"),
                                    mac: EthernetAddress([2, 0, 0, 0, 0xff, p as u8]),
                                    vlan: VlanMode::All,
                                });
                                publish(&cfg, &mut cached, &mut reference);
                            }
                        }
                        Op::FlushFdb => {
                            cached.flush_mac_table();
                            reference.flush_mac_table();
                        }
                        Op::Tick(dt) => {
                            now += dt;
                            cached.tick(now);
                            reference.tick(now);
                        }
                    }
                }
            }
        }
    }
}
