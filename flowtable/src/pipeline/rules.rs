//! The rule stage: a matching rule's actions become the decision's steps (running the
//! bridge or the router where an action asks), and the packet and byte counts of each rule.

use std::collections::HashMap;

use super::Pipeline;
use super::coherence::{CacheEntry, Resolution};
use crate::action::{Decision, DropReason, Step};
use crate::config::Config;
use crate::key::FlowKey;
use crate::rule::{Action, Rule};

impl Pipeline {
    /// Turns a rule's actions into steps, running `normal` and `route` where they appear.
    pub(super) fn apply_rule(
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

    pub(super) fn fold_counts(&mut self, entry: &CacheEntry) {
        if let Some(rule) = entry.decision.rule() {
            let s = self.rule_counts.entry(rule).or_default();
            s.0 += entry.packets;
            s.1 += entry.bytes;
        }
    }

    /// Adds packets and bytes that another level (the kernel) forwarded for `rule`.
    pub fn add_rule_counts(&mut self, rule: u32, packets: u64, bytes: u64) {
        let s = self.rule_counts.entry(rule).or_default();
        s.0 += packets;
        s.1 += bytes;
    }
}
