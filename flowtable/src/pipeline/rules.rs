//! The rule stage: a packet's walk through the flow tables. A matching rule's actions become
//! the decision's steps (running the bridge, the router or connection tracking where an
//! action asks); `resubmit`, `goto_table` and `ct(table=N)` continue in other tables, and the
//! whole walk becomes one decision, cached as one entry. Also the packet and byte counts of
//! each rule.

use std::collections::HashMap;

use super::Pipeline;
use super::coherence::{CacheEntry, Resolution};
use super::trace::TraceKind;
use crate::action::{Decision, DropReason, Step};
use crate::config::Config;
use crate::key::{FlowKey, Layout, VLAN_PRESENT};
use crate::rule::{Action, Rule};

/// How deep `resubmit` may nest, as OVS's translation depth limit.
pub const MAX_RESUBMIT_DEPTH: u8 = 64;

/// The fields of a [`FlowKey`] the kernel fast path's key does not hold (the TTL, TOS, TCP
/// flags other than FIN/SYN/RST, the IPv6 flow label): a decision that looked at them stays in
/// userspace. (The `ct_*` fields are not the packet's; decisions that used connection
/// tracking are handled apart.)
fn unkeyed(mask: &FlowKey) -> bool {
    mask.nw_ttl != 0 || mask.nw_tos != 0 || mask.tcp_flags & !0x007 != 0 || mask.ipv6_label != 0
}

/// One packet's way through the tables.
pub(super) struct Walk<'p> {
    /// The packet's key as the actions so far changed it.
    pub(super) key: FlowKey,
    /// The frame it came in (for connection tracking), if the caller gave one.
    pub(super) packet: Option<(&'p [u8], &'p Layout)>,
    steps: Vec<Step>,
    rules: Vec<u32>,
    pub(super) resolution: Resolution,
    /// Why the bridge or router dropped, if one of them did.
    inner_drop: Option<DropReason>,
    pub(super) depth: u8,
}

impl<'p> Walk<'p> {
    pub(super) fn new(key: &FlowKey, packet: Option<(&'p [u8], &'p Layout)>) -> Walk<'p> {
        Walk {
            key: *key,
            packet,
            steps: Vec::new(),
            rules: Vec::new(),
            resolution: Resolution::default(),
            inner_drop: None,
            depth: 0,
        }
    }

    fn finish(self) -> (Decision, Resolution) {
        let mut decision = Decision::from_steps(&self.steps);
        if let (Some(_), Some(reason)) = (decision.drop_reason(), self.inner_drop) {
            decision = Decision::drop(reason);
        }
        (decision.with_rules(&self.rules), self.resolution)
    }
}

impl Pipeline {
    /// The rules' part of a decision: table 0, and wherever its rules send the packet on. A
    /// miss in table 0 is the learning switch (`normal`).
    pub(super) fn walk_tables(
        &mut self,
        config: &Config,
        key: &FlowKey,
        packet: Option<(&[u8], &Layout)>,
        now: u64,
    ) -> (Decision, Resolution) {
        let mut walk = Walk::new(key, packet);
        if !self.run_table(config, &mut walk, 0, now) {
            self.trace(0, TraceKind::Miss, || {
                "no rule in table 0: normal".to_string()
            });
            let (decision, resolution) = self.normal(config, key, now);
            walk.resolution.merge(resolution);
            self.trace_decision(0, &decision);
            return (decision, walk.resolution);
        }
        walk.finish()
    }

    /// Looks the walk's key up in `table` and runs the rule found; `false` on a miss (the
    /// caller decides what a miss means).
    pub(super) fn run_table(
        &mut self,
        config: &Config,
        walk: &mut Walk<'_>,
        table: u8,
        now: u64,
    ) -> bool {
        let Some(classifier) = config.rules.table(table) else {
            return false;
        };
        if unkeyed(classifier.masks()) {
            walk.resolution.unkeyed = true;
        }
        let Some(rule) = classifier.lookup(&walk.key) else {
            return false;
        };
        self.apply_rule(config, walk, rule, now);
        true
    }

    /// Runs a rule's actions, in order, into the walk.
    fn apply_rule(&mut self, config: &Config, walk: &mut Walk<'_>, rule: &Rule, now: u64) {
        walk.rules.push(rule.id);
        self.trace_rule(walk.depth, rule);
        let mut goto = None;
        for action in &rule.actions {
            let key = &mut walk.key;
            match *action {
                Action::Output(port) => walk.steps.push(Step::Output { port, tag: None }),
                Action::OutputInPort => walk.steps.push(Step::Output {
                    port: key.in_port,
                    tag: None,
                }),
                Action::Flood => walk.steps.push(Step::FloodAll {
                    except: key.in_port,
                }),
                // A rule's drop adds nothing; what earlier tables output still goes.
                Action::Drop => {}
                Action::SetDlSrc(mac) => {
                    key.dl_src = mac.to_u64();
                    walk.steps.push(Step::SetEthSrc(mac));
                }
                Action::SetDlDst(mac) => {
                    key.dl_dst = mac.to_u64();
                    walk.steps.push(Step::SetEthDst(mac));
                }
                Action::SetVlanVid(vid) => {
                    key.vlan = VLAN_PRESENT | vid;
                    walk.steps.push(Step::SetVlanVid(vid));
                }
                Action::StripVlan => {
                    key.vlan = 0;
                    walk.steps.push(Step::StripVlan);
                }
                Action::PushVlan(vid) => {
                    key.vlan = VLAN_PRESENT | vid;
                    walk.steps.push(Step::PushVlan(vid));
                }
                Action::DecTtl => {
                    key.nw_ttl = key.nw_ttl.saturating_sub(1);
                    walk.steps.push(Step::DecTtl);
                }
                Action::SetNwSrc(ip) => {
                    key.nw_src = ip_bits(ip);
                    walk.steps.push(Step::SetIpSrc(ip));
                }
                Action::SetNwDst(ip) => {
                    key.nw_dst = ip_bits(ip);
                    walk.steps.push(Step::SetIpDst(ip));
                }
                Action::SetTpSrc(port) => {
                    key.tp_src = port;
                    walk.steps.push(Step::SetTpSrc(port));
                }
                Action::SetTpDst(port) => {
                    key.tp_dst = port;
                    walk.steps.push(Step::SetTpDst(port));
                }
                Action::SetDscp(dscp) => {
                    key.nw_tos = (key.nw_tos & 0x03) | dscp << 2;
                    walk.steps.push(Step::SetIpDscp(dscp));
                }
                Action::SetEcn(ecn) => {
                    key.nw_tos = (key.nw_tos & 0xfc) | ecn;
                    walk.steps.push(Step::SetIpEcn(ecn));
                }
                Action::SetTtl(ttl) => {
                    key.nw_ttl = ttl;
                    walk.steps.push(Step::SetIpTtl(ttl));
                }
                Action::Normal | Action::Route => {
                    let key = *key;
                    let (decision, resolution) = if *action == Action::Normal {
                        self.normal(config, &key, now)
                    } else {
                        self.route_action(config, &key, now)
                    };
                    self.trace_decision(walk.depth + 1, &decision);
                    walk.resolution.merge(resolution);
                    walk.steps.extend_from_slice(decision.steps());
                    walk.inner_drop = walk.inner_drop.or(decision.drop_reason());
                }
                Action::Resubmit { port, table } => {
                    let table = table.unwrap_or(rule.table);
                    let saved = walk.key.in_port;
                    if let Some(port) = port {
                        walk.key.in_port = port;
                    }
                    self.descend(config, walk, table, "resubmit", now);
                    walk.key.in_port = saved;
                }
                Action::GotoTable(table) => goto = Some(table),
                Action::Ct(ct) => self.ct_action(config, walk, &ct, now),
            }
        }
        if let Some(table) = goto.filter(|&t| t > rule.table) {
            self.descend(config, walk, table, "goto_table", now);
        }
    }

    /// Continues the walk in `table`, one level deeper (a miss there does nothing, as OVS's
    /// table-miss in later tables drops).
    pub(super) fn descend(
        &mut self,
        config: &Config,
        walk: &mut Walk<'_>,
        table: u8,
        how: &str,
        now: u64,
    ) {
        if walk.depth >= MAX_RESUBMIT_DEPTH {
            self.trace(walk.depth, TraceKind::Miss, || {
                format!("{how} to table {table}: too deep, dropped")
            });
            return;
        }
        walk.depth += 1;
        self.trace(walk.depth, TraceKind::Table, || {
            format!("{how} to table {table}")
        });
        if !self.run_table(config, walk, table, now) {
            self.trace(walk.depth, TraceKind::Miss, || {
                format!("no rule in table {table}: nothing done")
            });
        }
        walk.depth -= 1;
    }

    /// Packets and bytes each rule decided so far, by rule id.
    pub fn rule_stats(&self) -> HashMap<u32, (u64, u64)> {
        let mut stats: HashMap<u32, (u64, u64)> =
            self.rule_counts.iter().map(|(&k, &v)| (k, v)).collect();
        for (_, entry, _) in self.cache.iter() {
            for &rule in entry.decision.rules() {
                let s = stats.entry(rule).or_default();
                s.0 += entry.packets;
                s.1 += entry.bytes;
            }
        }
        stats
    }

    pub(super) fn fold_counts(&mut self, entry: &CacheEntry) {
        self.count_rules(&entry.decision, entry.packets, entry.bytes);
    }

    /// Adds packets and bytes to every rule of `decision`.
    pub(super) fn count_rules(&mut self, decision: &Decision, packets: u64, bytes: u64) {
        for &rule in decision.rules() {
            let s = self.rule_counts.entry(rule).or_default();
            s.0 += packets;
            s.1 += bytes;
        }
    }

    /// Adds packets and bytes that another level (the kernel) forwarded for `rule`.
    pub fn add_rule_counts(&mut self, rule: u32, packets: u64, bytes: u64) {
        let s = self.rule_counts.entry(rule).or_default();
        s.0 += packets;
        s.1 += bytes;
    }
}

fn ip_bits(ip: core::net::IpAddr) -> u128 {
    match ip {
        core::net::IpAddr::V4(a) => u128::from(u32::from(a)),
        core::net::IpAddr::V6(a) => u128::from(a),
    }
}
