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
//! # Invalid sources
//! A frame whose source MAC is zero, multicast or broadcast is dropped
//! ([`DropReason::InvalidSource`]) before rules, bridge or router see it, and never learned.
//!
//! # Port security and storms
//! A port locked to some source MACs drops frames from others before the rules
//! ([`DropReason::MacLock`]); one at its MAC limit drops frames from new sources
//! ([`DropReason::MacLimit`], never cached: room comes back as entries age). A broadcast or
//! multicast frame is counted against the port's storm limit and the loop guard before the
//! cache is looked at ([`DropReason::Storm`]; see `storm`).
//!
//! # Several workers
//! Each worker learns what it sees and reports it as [`MacEvent`]s ([`Pipeline::take_events`])
//! for the other workers to apply ([`Pipeline::apply_event`]); refreshes are reported at most
//! every quarter of the age limit per address.

mod bridge;
mod coherence;
mod ct;
#[cfg(test)]
mod ct_tests;
mod router;
mod rules;
mod storm;
#[cfg(test)]
mod tests;
mod trace;

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::Arc;

use self::coherence::{CacheEntry, DEP_BUCKETS, Resolution, Slot};
pub use self::ct::{ConnTable, state_names};
pub use self::rules::MAX_RESUBMIT_DEPTH;
pub use self::storm::Blocked;
pub use self::trace::{Trace, TraceEvent, TraceKind, describe};
use crate::action::{Decision, DropReason};
use crate::cache::FlowCache;
use crate::config::Config;
use crate::conntrack::{ConnKey, Conntrack, CtConfig};
use crate::key::{FlowKey, Layout};
use crate::mac_table::{MacKey, MacTable};
use crate::neighbor::{NeighborTable, Solicitation};
use crate::port::PortId;
use crate::wire::EthernetAddress;

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
    /// A tracked connection changed (or went): the decisions that used its generation
    /// bucket are stale.
    Conn {
        /// The bucket.
        bucket: u16,
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
    /// Sources seen here and not learned because the MAC table was full of live entries.
    pub macs_not_learned: u64,
    /// Neighbor solicitations asked for.
    pub solicitations: u64,
    /// Frames from new sources dropped because their port was at its MAC limit.
    pub macs_over_limit: u64,
    /// Times the loop guard blocked a port.
    pub loop_guard_trips: u64,
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
    /// The established connection the decision looked at, if it used connection tracking
    /// (a second-level cache keeps it alive with its counters: [`Pipeline::refresh_conn`]).
    pub conn: Option<ConnKey>,
    /// The decision looked at packet fields a second-level cache keyed on addresses, ports
    /// and FIN/SYN/RST cannot tell apart (TTL, TOS, other TCP flags, the flow label).
    pub unkeyed: bool,
}

impl Miss {
    fn of(resolution: &coherence::Resolution, seq: u64) -> Miss {
        Miss {
            deps: resolution.deps,
            learn: resolution.learn,
            cacheable: !resolution.uncacheable,
            seq,
            conn: resolution.conn,
            unkeyed: resolution.unkeyed,
        }
    }
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
    /// Storm control per port.
    storms: storm::Storms,
    /// Ports the loop guard blocked, not yet reported.
    blocked: Vec<Blocked>,
    /// The latest end of a block: no port is blocked past it.
    blocked_until_max: u64,
    /// Connections (`ct`): this pipeline's own, or shared with the other workers.
    conntrack: Box<dyn ConnTable>,
    /// A trace's lines, while one runs.
    tracing: Option<Vec<TraceEvent>>,
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
            storms: storm::Storms::with_hasher(ahash::RandomState::with_seeds(5, 6, 7, 8)),
            blocked: Vec::new(),
            blocked_until_max: 0,
            conntrack: Box::new(Conntrack::new(CtConfig::default())),
            tracing: None,
        }
    }

    /// A copy of this pipeline's tables (not its cache or counters) that decides without
    /// caching and changes nothing here: a trace runs on it.
    fn scratch(&self) -> Pipeline {
        let mut scratch = Pipeline::new(self.config.clone(), 2);
        scratch.caching = false;
        scratch.mac_table = self.mac_table.clone();
        scratch.neighbors = self.neighbors.clone();
        scratch.conntrack = Box::new(self.conntrack.snapshot());
        scratch
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

    /// Decides what to do with a packet of flow `key`, `len` bytes long.
    pub fn decide(&mut self, key: &FlowKey, len: u32, now: u64) -> &Decision {
        self.decide_detailed(key, len, now).0
    }

    /// [`decide_detailed`](Self::decide_detailed) for a packet whose bytes are at hand:
    /// connection tracking reads its TCP sequence numbers and windows, and an ICMP error's
    /// embedded header, from `frame` (`key` and `layout` are what [`FlowKey::extract`] made
    /// of it).
    pub fn decide_frame(
        &mut self,
        frame: &[u8],
        key: &FlowKey,
        layout: &Layout,
        now: u64,
    ) -> (&Decision, Option<Miss>) {
        let at = self.decide_at(key, frame.len() as u32, now, Some((frame, layout)));
        self.lend(at)
    }

    /// [`decide`](Self::decide), also saying what the decision depended on when it was
    /// computed from the tables rather than served by the cache.
    pub fn decide_detailed(
        &mut self,
        key: &FlowKey,
        len: u32,
        now: u64,
    ) -> (&Decision, Option<Miss>) {
        let at = self.decide_at(key, len, now, None);
        self.lend(at)
    }

    fn lend(&mut self, at: Slot) -> (&Decision, Option<Miss>) {
        let miss = self.last_miss.take();
        let decision = match at {
            Slot::Cache(i) => &self.cache.entry(i).decision,
            Slot::Uncached => &self.uncached,
        };
        (decision, miss)
    }

    /// Computes a decision from the tables, learning on the way.
    fn resolve(
        &mut self,
        key: &FlowKey,
        packet: Option<(&[u8], &Layout)>,
        now: u64,
    ) -> (Decision, Resolution) {
        // As the Linux bridge (br_handle_frame), a frame whose source no host may have is
        // dropped before anything else sees it: it is neither learned nor forwarded, whatever
        // the rules say. The decision depends on the key alone and is cached as any other.
        if !EthernetAddress::from_u64(key.dl_src).is_valid_unicast() {
            return (
                Decision::drop(DropReason::InvalidSource),
                Resolution::default(),
            );
        }
        let config = self.config.clone();
        // Port security comes before the rules too: a port locked to some sources takes
        // nothing from others.
        if let Some(port) = config.port(key.in_port)
            && !port.security.mac_lock.is_empty()
            && !port
                .security
                .mac_lock
                .contains(&EthernetAddress::from_u64(key.dl_src))
        {
            return (Decision::drop(DropReason::MacLock), Resolution::default());
        }
        // No rule, or no rule of table 0 that matches: the switch is a learning bridge.
        self.walk_tables(&config, key, packet, now)
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
            Event::Conn { bucket } => self.bump_bucket(bucket),
        }
    }

    /// What was learned locally since the last call, to send to the other workers.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Periodic work: at most every [`SWEEP_INTERVAL_NS`], refreshes the sources and
    /// connections of cached flows used since the last sweep, ages the MAC and neighbor
    /// tables and the connections, and re-confirms neighbors before they expire.
    pub fn tick(&mut self, now: u64) {
        if now.saturating_sub(self.last_sweep) < SWEEP_INTERVAL_NS {
            return;
        }
        let since = self.last_sweep;
        self.last_sweep = now;
        self.refresh_used_sources(since);
        self.expire_macs(now);
        self.expire_neighbors(now);
        self.expire_conns(now);
    }
}
