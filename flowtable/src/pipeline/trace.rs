//! `xvsctl trace`: what the pipeline does with one packet, step by step (OVS's
//! `ofproto/trace`). A trace runs on a scratch copy of the pipeline's tables, so it learns
//! nothing, commits no connection and changes no counter.

use super::{Miss, Pipeline};
use crate::action::Decision;
use crate::flow_spec::{format_actions, format_match};
use crate::key::FlowKey;
use crate::rule::Rule;

/// What a trace line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    /// The walk enters a table (`resubmit`, `goto_table`, `ct(table=N)`).
    Table,
    /// A rule matched.
    Rule,
    /// No rule matched in a table.
    Miss,
    /// A connection tracking lookup.
    Conntrack,
    /// The learning switch or the router decided.
    Switch,
}

impl TraceKind {
    /// A short stable name, for JSON.
    pub fn name(self) -> &'static str {
        match self {
            TraceKind::Table => "table",
            TraceKind::Rule => "rule",
            TraceKind::Miss => "miss",
            TraceKind::Conntrack => "conntrack",
            TraceKind::Switch => "switch",
        }
    }
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// How deep in resubmits the walk is (0: table 0).
    pub depth: u8,
    /// What it is about.
    pub kind: TraceKind,
    /// The rule, for [`TraceKind::Rule`].
    pub rule: Option<u32>,
    /// What happened, in words.
    pub text: String,
}

/// The whole trace of one packet.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The steps, in order.
    pub events: Vec<TraceEvent>,
    /// The decision the packet would get.
    pub decision: Decision,
    /// What the decision depended on (whether it would be cached, and what it would be
    /// invalidated by).
    pub miss: Miss,
}

impl Pipeline {
    /// Adds a line to the trace, if one runs: `text` is only called then, so deciding a
    /// packet never formats trace lines.
    pub(super) fn trace(&mut self, depth: u8, kind: TraceKind, text: impl FnOnce() -> String) {
        if let Some(events) = self.tracing.as_mut() {
            events.push(TraceEvent {
                depth,
                kind,
                rule: None,
                text: text(),
            });
        }
    }

    pub(super) fn trace_rule(&mut self, depth: u8, rule: &Rule) {
        if self.tracing.is_none() {
            return;
        }
        let config = self.config.clone();
        let names = |port| config.port(port).map(|p| p.name.clone());
        let text = format!(
            "table {}: priority={},{} actions={}",
            rule.table,
            rule.priority,
            format_match(&rule.pattern, &names),
            format_actions(&rule.actions, &names)
        );
        if let Some(events) = self.tracing.as_mut() {
            events.push(TraceEvent {
                depth,
                kind: TraceKind::Rule,
                rule: Some(rule.id),
                text,
            });
        }
    }

    pub(super) fn trace_decision(&mut self, depth: u8, decision: &Decision) {
        self.trace(depth, TraceKind::Switch, || describe(decision));
    }

    /// Traces a packet of flow `key` (`ct_*` fields as they arrive: zero) through a scratch
    /// copy of this pipeline: the same rules, MAC table, neighbors and connections, and
    /// nothing of it changed.
    pub fn trace_packet(&self, key: &FlowKey, now: u64) -> Trace {
        let mut scratch = self.scratch();
        scratch.tracing = Some(Vec::new());
        let (decision, resolution) = scratch.resolve(key, None, now);
        Trace {
            events: scratch.tracing.take().unwrap_or_default(),
            decision,
            miss: Miss::of(&resolution, 0),
        }
    }
}

/// A decision in words: `output:3`, `flood in VLAN 1`, `drop (no_route)`.
pub fn describe(decision: &Decision) -> String {
    if let Some(reason) = decision.drop_reason() {
        return format!("drop ({})", reason.name());
    }
    let parts: Vec<String> = decision.steps().iter().map(|s| format!("{s:?}")).collect();
    parts.join(", ")
}
