//! The desired state's flow rules against the switch's ports of the moment.
//!
//! A rule is kept as text that names ports by name, so it means the same port whatever
//! number the switch gives it. When a named port is missing, the rule behaves as OpenFlow
//! switches treat a rule whose port vanished: an `in_port` of a missing port matches nothing
//! (the rule is *dormant* and not installed), an `output:` to a missing port sends nowhere
//! (that action is left out; a rule left with no action drops, as `actions=drop` does).
//! Either way the rule is kept, shown by `dump-flows` with the name it was given, and
//! does its full work again once a port of that name is back, under whatever number.

use std::cell::Cell;

use flowtable::flow_spec::{FlowSpec, FlowSpecError, MatchSpec, format_rule, parse_flow};
use flowtable::{Config, Match, PortId, Rule};
use xvs_proto::state;

/// Stand-ins for missing ports while parsing. Two, so that a reference to a missing port can
/// be told from a port given by number (which reads the same under both).
const MISSING: [PortId; 2] = [PortId::MAX, PortId::MAX - 1];

/// A rule of the desired state, read against the switch's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compiled {
    /// The rule as the switch should run it: present ports by number, outputs to missing
    /// ports left out. When `dormant`, its `in_port` is a stand-in and it is not run.
    pub(crate) rule: Rule,
    /// Its `in_port` names a missing port: it matches nothing.
    pub(crate) dormant: bool,
    /// It names no missing port.
    pub(crate) complete: bool,
    /// The flow as parsed (cookie, timeouts), ports as in `rule`.
    pub(crate) spec: FlowSpec,
}

impl Compiled {
    /// Whether this is the rule that `pattern` at `priority` names exactly: the one `add-flow`
    /// replaces and `del-flows --strict` deletes. A match from a person names present ports
    /// only, so it never names a dormant rule.
    pub(crate) fn is_strictly(&self, table: u8, pattern: &Match, priority: u16) -> bool {
        !self.dormant && self.rule.is_strictly(table, pattern, priority)
    }

    /// Whether `del-flows --strict` with `spec` deletes it: the same match and priority, in
    /// the spec's table (every table without one), with a cookie the spec selects.
    pub(crate) fn strictly_selected_by(&self, spec: &MatchSpec) -> bool {
        let priority = spec.priority.unwrap_or(Rule::DEFAULT_PRIORITY);
        spec.selects(self.rule.table, self.spec.cookie)
            && self.is_strictly(self.rule.table, &spec.pattern, priority)
    }

    /// Whether `del-flows` (or `dump-flows`) with `spec` selects it: its table and cookie,
    /// and a pattern that covers its match (a dormant rule only by a pattern that does not
    /// constrain `in_port`).
    pub(crate) fn selected_by(&self, spec: &MatchSpec) -> bool {
        spec.selects(self.rule.table, self.spec.cookie)
            && (!self.dormant || spec.pattern.mask().in_port == 0)
            && spec.pattern.covers(&self.rule.pattern)
    }
}

/// The port of each name in `live`. `LOCAL` (OpenFlow's name for the bridge's own port) is
/// the internal port, when the switch has exactly one.
pub(crate) fn port_ids(live: &Config) -> impl Fn(&str) -> Option<PortId> + '_ {
    |name| {
        if name.eq_ignore_ascii_case("LOCAL") && live.port_by_name(name).is_none() {
            let mut internal = live
                .ports()
                .filter(|p| p.name.ends_with(state::INTERNAL_SUFFIX));
            return match (internal.next(), internal.next()) {
                (Some(p), None) => Some(p.id),
                _ => None,
            };
        }
        live.port_by_name(name).map(|p| p.id)
    }
}

/// The name of each port of `live`.
pub(crate) fn port_names(live: &Config) -> impl Fn(PortId) -> Option<String> + '_ {
    |id| live.port(id).map(|p| p.name.clone())
}

/// Reads `rule` against the ports of `live`.
///
/// # Errors
/// The text is not a flow (never for a rule the daemon stored itself).
pub(crate) fn compile(rule: &state::Rule, live: &Config) -> Result<Compiled, FlowSpecError> {
    let ids = port_ids(live);
    let missing = Cell::new(false);
    let parse = |stand_in: PortId| {
        parse_flow(&rule.flow, &|name: &str| {
            ids(name).or_else(|| {
                missing.set(true);
                Some(stand_in)
            })
        })
    };
    let first = parse(MISSING[0])?;
    if !missing.get() {
        return Ok(Compiled {
            rule: first.clone().into_rule(rule.id),
            dormant: false,
            complete: true,
            spec: first,
        });
    }
    let second = parse(MISSING[1])?;
    let actions = first
        .actions
        .iter()
        .zip(&second.actions)
        .filter(|(a, b)| a == b)
        .map(|(a, _)| *a)
        .collect();
    Ok(Compiled {
        rule: Rule {
            id: rule.id,
            table: first.table,
            priority: first.priority,
            pattern: first.pattern,
            actions,
        },
        dormant: first.pattern != second.pattern,
        complete: false,
        spec: first,
    })
}

/// The desired state's rules, with each one compiled, kept in step while they are edited.
#[derive(Debug)]
pub(crate) struct Rules<'a> {
    desired: &'a mut Vec<state::Rule>,
    compiled: Vec<Compiled>,
    live: &'a Config,
}

impl<'a> Rules<'a> {
    /// The rules of `desired`, read against the ports of `live`.
    ///
    /// # Errors
    /// A stored rule is not a flow.
    pub(crate) fn open(
        desired: &'a mut Vec<state::Rule>,
        live: &'a Config,
    ) -> Result<Rules<'a>, FlowSpecError> {
        let compiled = desired
            .iter()
            .map(|r| compile(r, live))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            desired,
            compiled,
            live,
        })
    }

    /// Adds `spec` (parsed against the same ports) as rule `id`, added at `added` (Unix
    /// seconds), replacing the rule of the same table, match and priority; returns the
    /// replaced rule's id.
    pub(crate) fn add(&mut self, spec: FlowSpec, id: u32, added: u64) -> Option<u32> {
        let replaced = self
            .compiled
            .iter()
            .find(|c| c.is_strictly(spec.table, &spec.pattern, spec.priority))
            .map(|c| c.rule.id);
        if let Some(old) = replaced {
            self.retain(|c| c.rule.id != old);
        }
        let flow = format_rule(&spec, &port_names(self.live));
        self.desired.push(state::Rule {
            id,
            priority: spec.priority,
            flow,
            added,
        });
        self.compiled.push(Compiled {
            rule: spec.clone().into_rule(id),
            dormant: false,
            complete: true,
            spec,
        });
        replaced
    }

    /// Deletes every rule; returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.desired.len();
        self.desired.clear();
        self.compiled.clear();
        n
    }

    /// Deletes the rules for which `doomed` holds; returns how many.
    pub(crate) fn delete(&mut self, doomed: impl Fn(&Compiled) -> bool) -> usize {
        let before = self.desired.len();
        self.retain(|c| !doomed(c));
        before - self.desired.len()
    }

    fn retain(&mut self, keep: impl Fn(&Compiled) -> bool) {
        let mut keeps = self.compiled.iter().map(&keep);
        self.desired.retain(|_| keeps.next().unwrap_or(true));
        self.compiled.retain(keep);
    }
}

/// A switch configuration with these ports (name, number), every VLAN, MAC `02:00:00:00:00:N`.
#[cfg(test)]
pub(crate) fn live(ports: &[(&str, PortId)]) -> Config {
    let mut config = Config::default();
    for &(name, id) in ports {
        config.set_port(flowtable::PortConfig {
            id,
            name: name.to_owned(),
            mac: flowtable::wire::EthernetAddress([2, 0, 0, 0, 0, id as u8]),
            vlan: flowtable::VlanMode::All,
            security: Default::default(),
        });
    }
    config
}

#[cfg(test)]
mod tests {
    use flowtable::flow_spec::parse_match;
    use flowtable::rule::Action;

    use super::*;

    fn rule(id: u32, flow: &str) -> state::Rule {
        let priority = parse_flow(flow, &|_| Some(1)).unwrap().priority;
        state::Rule {
            id,
            priority,
            flow: flow.to_owned(),
            added: 0,
        }
    }

    #[test]
    fn rules_follow_ports_by_name() {
        let r = rule(1, "priority=10,in_port=a,actions=output:b");
        let c = compile(&r, &live(&[("a", 1), ("b", 2)])).unwrap();
        assert!(!c.dormant && c.complete);
        assert_eq!(c.rule.pattern.value().in_port, 1);
        assert_eq!(c.rule.actions, [Action::Output(2)]);
        // "a" deleted and added again as 5, "b" as 1.
        let c = compile(&r, &live(&[("b", 1), ("a", 5)])).unwrap();
        assert_eq!(c.rule.pattern.value().in_port, 5);
        assert_eq!(c.rule.actions, [Action::Output(1)]);
    }

    #[test]
    fn local_is_the_one_internal_port() {
        let one = live(&[("a", 1), ("host0-sw", 2)]);
        assert_eq!(port_ids(&one)("LOCAL"), Some(2));
        let spec = parse_flow("in_port=LOCAL,actions=output:a", &port_ids(&one)).unwrap();
        assert_eq!(spec.pattern.value().in_port, 2);
        let none = live(&[("a", 1)]);
        assert_eq!(port_ids(&none)("LOCAL"), None);
        let two = live(&[("h1-sw", 1), ("h2-sw", 2)]);
        assert_eq!(port_ids(&two)("LOCAL"), None, "ambiguous");
    }

    #[test]
    fn a_missing_in_port_matches_nothing_and_a_missing_output_sends_nowhere() {
        let r = rule(1, "priority=10,in_port=a,actions=output:b,normal");
        let c = compile(&r, &live(&[("b", 2)])).unwrap();
        assert!(c.dormant && !c.complete);
        let c = compile(&r, &live(&[("a", 1)])).unwrap();
        assert!(!c.dormant && !c.complete);
        assert_eq!(c.rule.actions, [Action::Normal]);
        let only = rule(2, "icmp,actions=output:b");
        let c = compile(&only, &live(&[])).unwrap();
        assert!(!c.dormant);
        assert!(c.rule.actions.is_empty(), "no output left: drops");
        // A port given by a number that names no port stays that number.
        let by_number = rule(3, "in_port=7,actions=output:65535,output:b");
        let c = compile(&by_number, &live(&[])).unwrap();
        assert!(!c.dormant);
        assert_eq!(c.rule.pattern.value().in_port, 7);
        assert_eq!(c.rule.actions, [Action::Output(65535)]);
    }

    #[test]
    fn edits_keep_the_state_and_its_compiled_rules_in_step() {
        let ports = live(&[("a", 1), ("b", 2)]);
        let mut desired = vec![
            rule(1, "priority=10,in_port=gone,icmp,actions=drop"),
            rule(2, "priority=10,icmp,actions=output:a"),
        ];
        let mut rules = Rules::open(&mut desired, &ports).unwrap();
        let spec = parse_flow("priority=10,icmp,actions=output:2", &port_ids(&ports)).unwrap();
        assert_eq!(
            rules.add(spec, 3, 0),
            Some(2),
            "same match and priority replaces"
        );
        let spec =
            parse_flow("priority=10,in_port=a,icmp,actions=drop", &port_ids(&ports)).unwrap();
        assert_eq!(
            rules.add(spec, 4, 0),
            None,
            "a dormant rule is never the same rule"
        );
        // del-flows in_port=a covers rule 4 only; icmp covers the dormant one too.
        let in_a = parse_match("in_port=a", &port_ids(&ports)).unwrap();
        assert_eq!(rules.delete(|c| c.selected_by(&in_a)), 1);
        let icmp = parse_match("icmp", &port_ids(&ports)).unwrap();
        assert_eq!(rules.delete(|c| c.selected_by(&icmp)), 2);
        assert_eq!(rules.clear(), 0);
        drop(rules);
        assert!(desired.is_empty());

        let mut desired = vec![rule(1, "icmp,actions=drop")];
        let mut rules = Rules::open(&mut desired, &ports).unwrap();
        let spec = parse_flow("in_port=1,actions=output:b", &port_ids(&ports)).unwrap();
        rules.add(spec, 2, 0);
        assert_eq!(rules.compiled.len(), 2);
        drop(rules);
        assert_eq!(
            desired[1].flow, "priority=32768,in_port=a,actions=output:b",
            "stored with names"
        );
    }
}
