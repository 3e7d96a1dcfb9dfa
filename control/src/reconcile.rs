//! Reconciling: the forwarding configuration that a desired state asks of the switch, for
//! the ports the switch has.
//!
//! This is the pure half of making the switch match the desired state (the daemon adds and
//! removes the ports themselves): everything here is a function of the desired state and of
//! the switch's current ports, so that rules never depend on the order ports were numbered in.

use flowtable::config::Binding;
use flowtable::route::parse_prefix;
use flowtable::wire::EthernetAddress;
use flowtable::{Config, PortConfig, PortSecurity};
use xvs_proto::state::{self, DesiredState};
use xvs_proto::{RpcError, code};

use crate::rules;
use crate::vlan::to_mode;

/// A protocol error for a rule, address or route that cannot be applied.
pub(crate) fn bad_spec(message: impl std::fmt::Display) -> RpcError {
    RpcError::new(code::BAD_SPEC, message.to_string())
}

/// Reads a router address, `addr/len`.
///
/// # Errors
/// [`code::BAD_SPEC`] saying which part is wrong.
pub(crate) fn parse_addr(text: &str) -> Result<(std::net::IpAddr, u8), RpcError> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| bad_spec("give the address with its length, e.g. 10.1.0.254/24"))?;
    Ok((
        addr.parse()
            .map_err(|_| bad_spec(format!("{addr:?} is not an IP address")))?,
        len.parse()
            .map_err(|_| bad_spec(format!("{len:?} is not a prefix length")))?,
    ))
}

/// Reads a router interface's MAC.
///
/// # Errors
/// [`code::BAD_SPEC`] when it is not one.
pub(crate) fn parse_mac(text: &str) -> Result<EthernetAddress, RpcError> {
    text.parse()
        .map_err(|e| bad_spec(format!("mac {text:?}: {e}")))
}

/// A port's security settings as the pipeline reads them.
///
/// # Errors
/// A locked MAC that is no MAC ([`code::BAD_SPEC`]).
fn security(port: &state::Port) -> Result<PortSecurity, RpcError> {
    Ok(PortSecurity {
        mac_lock: port
            .mac_lock
            .iter()
            .map(|m| parse_mac(m))
            .collect::<Result<_, _>>()?,
        mac_limit: port.mac_limit,
        storm_limit: port.storm_limit,
    })
}

/// The configuration that makes the switch do what `desired` asks, for the ports `live` has
/// now (their numbers and MACs; `live` also gives the MAC learning limits, which are the
/// daemon's start-up options).
///
/// - A port takes its VLAN mode from the desired state (one the state does not name keeps
///   its own).
/// - A router interface on a port the switch does not have waits for it (the daemon forgets
///   the addresses of a port it deletes, so only a restored state has such interfaces).
/// - Rules follow their ports by name; see [`crate::rules`] for a rule naming a missing port.
///
/// # Errors
/// Something of `desired` does not apply: a rule that is no flow, an address in use twice, a
/// route of mixed families ([`code::BAD_SPEC`]), a bad VLAN ([`code::INVALID_PARAMS`]).
pub(crate) fn derive_config(desired: &DesiredState, live: &Config) -> Result<Config, RpcError> {
    let mut config = Config::default();
    config.mac_capacity = live.mac_capacity;
    config.mac_max_age_ns = live.mac_max_age_ns;
    config.loop_guard_pps = live.loop_guard_pps;
    for port in live.ports() {
        let name = crate::internal::desired_name(desired, &port.name);
        let (vlan, security) = match desired.ports.get(&name) {
            Some(wanted) => (to_mode(&wanted.vlan)?, security(wanted)?),
            None => (port.vlan.clone(), port.security.clone()),
        };
        config.set_port(PortConfig {
            vlan,
            security,
            ..port.clone()
        });
    }
    for interface in &desired.interfaces {
        let binding = match &interface.on {
            state::Binding::Vlan(vid) => Binding::Vlan(*vid),
            state::Binding::Port(name) => match live.port_by_name(
                &desired
                    .ports
                    .get(name)
                    .map_or_else(|| name.clone(), |p| crate::internal::switch_name(name, p)),
            ) {
                Some(port) => Binding::Port(port.id),
                None => continue,
            },
        };
        let mac = interface.mac.as_deref().map(parse_mac).transpose()?;
        for text in &interface.addrs {
            let (addr, len) = parse_addr(text)?;
            config
                .add_address(binding, addr, len, mac)
                .map_err(bad_spec)?;
        }
    }
    for route in &desired.routes {
        let (prefix, len) = parse_prefix(&route.prefix).map_err(bad_spec)?;
        config.add_route(prefix, len, route.via).map_err(bad_spec)?;
    }
    for rule in &desired.rules {
        let compiled = rules::compile(rule, live).map_err(bad_spec)?;
        if !compiled.dormant {
            config.rules.insert(compiled.rule);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flowtable::rule::Action;
    use flowtable::{PortId, VlanMode};
    use xvs_proto::VlanSpec;
    use xvs_proto::state::{Port, RouterInterface, Rule, StaticRoute};

    use super::*;
    use crate::rules::live;

    fn state_with(ports: &[&str]) -> DesiredState {
        DesiredState {
            ports: ports
                .iter()
                .map(|name| ((*name).to_owned(), Port::default()))
                .collect::<BTreeMap<_, _>>(),
            ..DesiredState::default()
        }
    }

    fn rule(id: u32, priority: u16, flow: &str) -> Rule {
        Rule {
            id,
            priority,
            flow: flow.to_owned(),
            added: 0,
        }
    }

    fn in_port_of(config: &Config, id: u32) -> Option<PortId> {
        config.rules.get(id).map(|r| r.pattern.value().in_port)
    }

    #[test]
    fn a_rule_still_means_its_port_after_the_port_comes_back_renumbered() {
        let mut desired = state_with(&["a", "b"]);
        desired.rules = vec![
            rule(1, 100, "priority=100,in_port=a,actions=output:b"),
            rule(2, 100, "priority=100,in_port=b,actions=output:a"),
        ];
        let config = derive_config(&desired, &live(&[("a", 1), ("b", 2)])).unwrap();
        assert_eq!(in_port_of(&config, 1), Some(1));
        assert_eq!(config.rules.get(2).unwrap().actions, [Action::Output(1)]);

        // "a" deleted: the switch has only "b" (still 2). Rule 1 matches nothing; rule 2
        // outputs nowhere; both are kept in the desired state.
        desired.ports.remove("a");
        let config = derive_config(&desired, &live(&[("b", 2)])).unwrap();
        assert_eq!(config.rules.len(), 1);
        assert!(config.rules.get(2).unwrap().actions.is_empty());

        // Another interface got number 1; "a" came back as 3. Nothing of "a" goes to "c".
        desired.ports.insert("a".into(), Port::default());
        desired.ports.insert("c".into(), Port::default());
        let config = derive_config(&desired, &live(&[("c", 1), ("b", 2), ("a", 3)])).unwrap();
        assert_eq!(in_port_of(&config, 1), Some(3));
        assert_eq!(config.rules.get(2).unwrap().actions, [Action::Output(3)]);
    }

    #[test]
    fn ports_take_their_vlan_and_interfaces_their_addresses() {
        let mut desired = state_with(&["a", "b"]);
        desired.ports.get_mut("a").unwrap().vlan = VlanSpec::Access { tag: 10 };
        desired.interfaces = vec![
            RouterInterface {
                on: state::Binding::Vlan(20),
                mac: None,
                addrs: vec!["10.2.0.254/24".into()],
            },
            RouterInterface {
                on: state::Binding::Port("a".into()),
                mac: Some("02:00:00:00:00:fe".into()),
                addrs: vec!["10.1.0.254/24".into(), "fd00:1::fe/64".into()],
            },
            RouterInterface {
                on: state::Binding::Port("gone".into()),
                mac: None,
                addrs: vec!["10.3.0.254/24".into()],
            },
        ];
        desired.routes = vec![StaticRoute {
            prefix: "10.9.0.0/16".into(),
            via: "10.2.0.1".parse().unwrap(),
        }];
        let mut ports = live(&[("a", 1), ("b", 2)]);
        ports.mac_capacity = 77;
        let config = derive_config(&desired, &ports).unwrap();
        assert_eq!(config.mac_capacity, 77);
        assert_eq!(config.port(1).unwrap().vlan, VlanMode::Access(10));
        assert_eq!(config.port(2).unwrap().vlan, VlanMode::All);
        let names: Vec<&str> = config
            .interfaces()
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, ["vlan20", "a"], "in order; the missing port's waits");
        let on_a = &config.interfaces()[1];
        assert_eq!(
            (on_a.vlan, on_a.mac.to_string()),
            (10, "02:00:00:00:00:fe".into())
        );
        assert_eq!(on_a.addrs.len(), 2);
        assert_eq!(config.static_routes().count(), 1);
        assert!(config.route("10.9.1.1".parse().unwrap()).is_some());
    }

    #[test]
    fn what_does_not_apply_is_refused_with_the_switchs_words() {
        let mut desired = state_with(&[]);
        desired.interfaces = vec![
            RouterInterface {
                on: state::Binding::Vlan(1),
                mac: None,
                addrs: vec!["10.1.0.254/24".into()],
            },
            RouterInterface {
                on: state::Binding::Vlan(2),
                mac: None,
                addrs: vec!["10.1.0.254/16".into()],
            },
        ];
        let e = derive_config(&desired, &live(&[])).unwrap_err();
        assert_eq!(e.code, code::BAD_SPEC);
        assert_eq!(e.message, "10.1.0.254 is already a router address");
        let mut desired = state_with(&[]);
        desired.routes = vec![StaticRoute {
            prefix: "10.9.0.0/16".into(),
            via: "fd00::1".parse().unwrap(),
        }];
        let e = derive_config(&desired, &live(&[])).unwrap_err();
        assert_eq!(e.message, "prefix and next hop are of different families");
    }

    #[test]
    fn addresses_are_read_as_before() {
        assert_eq!(
            parse_addr("10.0.0.1/24").unwrap(),
            ("10.0.0.1".parse().unwrap(), 24)
        );
        assert_eq!(
            parse_addr("10.0.0.1").unwrap_err().message,
            "give the address with its length, e.g. 10.1.0.254/24"
        );
        assert_eq!(
            parse_addr("x/24").unwrap_err().message,
            "\"x\" is not an IP address"
        );
        assert_eq!(
            parse_addr("10.0.0.1/x").unwrap_err().message,
            "\"x\" is not a prefix length"
        );
    }
}
