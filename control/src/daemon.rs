//! The control thread: owns the switch and answers requests, one at a time.

use std::collections::BTreeMap;

use dataplane::{PortOptions, Switch, SwitchError, XdpMode};
use flowtable::config::Binding;
use flowtable::flow_spec::{parse_flow, parse_match};
use flowtable::route::parse_prefix;
use flowtable::rule::Rule;
use flowtable::{Config, PortId};
use serde_json::Value;
use xvs_proto::fast_path::{SetFastPathParams, SetFastPathResult};
use xvs_proto::flows::{
    AddFlowResult, AddFlowsResult, DelFlowsParams, DelFlowsResult, FlowParams, FlowsParams,
};
use xvs_proto::meta::{CommandInfo, PROTOCOL, VersionResult};
use xvs_proto::methods::*;
use xvs_proto::ports::{AddPortParams, AddPortResult, ExternalIds, PortName, SetPortParams};
use xvs_proto::router::{AddrParams, RouteParams};
use xvs_proto::vlan::check_vid;
use xvs_proto::{Call, Empty, METHODS, Method, RpcError, code};

use crate::vlan::to_mode;

/// The protocol's error for a switch error, with the code a client can act on.
pub(crate) fn switch_error(e: SwitchError) -> RpcError {
    let code = match &e {
        SwitchError::NoSuchInterface(_) | SwitchError::NoSuchPort(_) => code::NO_SUCH_PORT,
        SwitchError::PortExists(_) => code::EXISTS,
        SwitchError::Invalid(_) => code::INVALID_PARAMS,
        _ => code::DATAPLANE,
    };
    RpcError::new(code, e.to_string())
}

fn bad_spec(message: impl std::fmt::Display) -> RpcError {
    RpcError::new(code::BAD_SPEC, message.to_string())
}

/// Method `M`'s answer on the wire: its result type is checked against `M` here.
fn answer<M: Method>(result: Result<M::Result, RpcError>) -> Result<Value, RpcError> {
    let result = result?;
    Ok(serde_json::to_value(&result).expect("results serialize to JSON"))
}

/// The daemon's state: the switch and what the control plane remembers about ports.
#[derive(Debug)]
pub struct Daemon {
    pub(crate) switch: Switch,
    external_ids: BTreeMap<String, ExternalIds>,
    next_rule: u32,
}

impl Daemon {
    /// A daemon driving `switch`.
    pub fn new(switch: Switch) -> Daemon {
        Daemon {
            switch,
            external_ids: BTreeMap::new(),
            next_rule: 1,
        }
    }

    /// Stops the switch.
    pub fn shutdown(self) {
        self.switch.shutdown();
    }

    /// Periodic work: drops ports whose interface went away.
    pub fn tick(&mut self) {
        for name in self.switch.check_ports() {
            self.external_ids.remove(&name);
        }
    }

    /// Answers one request.
    ///
    /// # Errors
    /// The request's error, with a code from [`code`].
    pub fn handle(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let call = Call::parse(method, params)?;
        self.dispatch(call)
    }

    /// Runs a call. The match is exhaustive: every method of the protocol's table is answered.
    fn dispatch(&mut self, call: Call) -> Result<Value, RpcError> {
        match call {
            Call::Version(Empty) => answer::<Version>(Ok(VersionResult {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL,
            })),
            Call::ListCommands(Empty) => {
                answer::<ListCommands>(Ok(METHODS.iter().map(CommandInfo::from).collect()))
            }
            Call::Show(Empty) => answer::<Show>(Ok(self.show())),
            Call::AddPort(p) => answer::<AddPort>(self.add_port(p)),
            Call::DelPort(p) => answer::<DelPort>(self.del_port(p)),
            Call::SetPort(p) => answer::<SetPort>(self.set_port(p)),
            Call::DumpPorts(p) => answer::<DumpPorts>(self.dump_ports(p)),
            Call::FdbShow(Empty) => answer::<FdbShow>(self.fdb_show()),
            Call::FdbFlush(Empty) => answer::<FdbFlush>(
                self.switch
                    .fdb_flush()
                    .map(|()| Empty)
                    .map_err(switch_error),
            ),
            Call::AddFlow(p) => answer::<AddFlow>(self.add_flow(p)),
            Call::AddFlows(p) => answer::<AddFlows>(self.add_flows(p)),
            Call::DelFlows(p) => answer::<DelFlows>(self.del_flows(p)),
            Call::DumpFlows(Empty) => answer::<DumpFlows>(self.dump_flows()),
            Call::AddAddr(p) => answer::<AddAddr>(self.change_addr(p, true)),
            Call::DelAddr(p) => answer::<DelAddr>(self.change_addr(p, false)),
            Call::ShowAddrs(Empty) => answer::<ShowAddrs>(Ok(self.show_addrs())),
            Call::AddRoute(p) => answer::<AddRoute>(self.change_route(p, true)),
            Call::DelRoute(p) => answer::<DelRoute>(self.change_route(p, false)),
            Call::ShowRoutes(Empty) => answer::<ShowRoutes>(Ok(self.show_routes())),
            Call::ShowNeighbors(Empty) => answer::<ShowNeighbors>(self.show_neighbors()),
            Call::DumpFastPath(Empty) => answer::<DumpFastPath>(self.dump_fast_path()),
            Call::SetFastPath(p) => answer::<SetFastPath>(self.set_fast_path(p)),
        }
    }

    /// The `external_ids` of port `name`.
    pub(crate) fn external_ids(&self, name: &str) -> ExternalIds {
        self.external_ids.get(name).cloned().unwrap_or_default()
    }

    /// Adds a port (as `add-port` does).
    ///
    /// # Errors
    /// Bad options, or the switch refused the port.
    pub fn add_port(&mut self, p: AddPortParams) -> Result<AddPortResult, RpcError> {
        let xdp_mode = match p.xdp_mode.as_deref() {
            None => None,
            Some("drv" | "native") => Some(XdpMode::Driver),
            Some("skb" | "generic") => Some(XdpMode::Generic),
            Some(other) => {
                return Err(RpcError::params(format!(
                    "xdp_mode {other:?} is not drv or skb"
                )));
            }
        };
        let vlan = p
            .vlan
            .as_ref()
            .map(to_mode)
            .transpose()?
            .unwrap_or_default();
        let options = PortOptions {
            queues: p.queues,
            xdp_mode,
            vlan,
        };
        let info = self
            .switch
            .add_port(&p.name, &options)
            .map_err(switch_error)?;
        if !p.external_ids.is_empty() {
            self.external_ids.insert(p.name.clone(), p.external_ids);
        }
        Ok(AddPortResult {
            id: info.id,
            name: info.name,
        })
    }

    fn del_port(&mut self, p: PortName) -> Result<Empty, RpcError> {
        self.switch.del_port(&p.name).map_err(switch_error)?;
        self.external_ids.remove(&p.name);
        Ok(Empty)
    }

    fn set_port(&mut self, p: SetPortParams) -> Result<Empty, RpcError> {
        let mode = to_mode(&p.vlan)?;
        self.switch
            .set_port_vlan(&p.name, mode)
            .map_err(switch_error)?;
        Ok(Empty)
    }

    fn set_fast_path(&mut self, p: SetFastPathParams) -> Result<SetFastPathResult, RpcError> {
        self.switch.set_fast_path(p.on).map_err(switch_error)?;
        Ok(SetFastPathResult {
            fast_path: self.switch.fast_path(),
        })
    }

    /// Edits a copy of the configuration and publishes it: the change is in force on every
    /// worker when this returns.
    fn update<T>(
        &mut self,
        edit: impl FnOnce(&mut Self, &mut Config) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut config = (**self.switch.config()).clone();
        let out = edit(self, &mut config)?;
        self.switch.publish(config).map_err(switch_error)?;
        Ok(out)
    }

    fn next_rule_id(&mut self) -> u32 {
        let id = self.next_rule;
        self.next_rule += 1;
        id
    }

    fn port_ids(config: &Config) -> impl Fn(&str) -> Option<PortId> + '_ {
        |name| config.port_by_name(name).map(|p| p.id)
    }

    fn add_flow(&mut self, p: FlowParams) -> Result<AddFlowResult, RpcError> {
        self.update(|d, config| {
            let spec = parse_flow(&p.flow, &Self::port_ids(config)).map_err(bad_spec)?;
            let id = d.next_rule_id();
            let replaced = config.rules.insert(spec.into_rule(id));
            Ok(AddFlowResult {
                id,
                replaced: replaced.map(|r| r.id),
            })
        })
    }

    /// Installs every rule or none: a bad spec is reported with its line number.
    fn add_flows(&mut self, p: FlowsParams) -> Result<AddFlowsResult, RpcError> {
        self.update(|d, config| {
            let mut ids = Vec::with_capacity(p.flows.len());
            for (n, flow) in p.flows.iter().enumerate() {
                let spec = parse_flow(flow, &Self::port_ids(config))
                    .map_err(|e| bad_spec(format!("flow {}: {e}", n + 1)))?;
                let id = d.next_rule_id();
                config.rules.insert(spec.into_rule(id));
                ids.push(id);
            }
            Ok(AddFlowsResult { ids })
        })
    }

    fn del_flows(&mut self, p: DelFlowsParams) -> Result<DelFlowsResult, RpcError> {
        self.update(|_, config| {
            let deleted = match &p.pattern {
                None => {
                    let n = config.rules.len();
                    config.rules.clear();
                    n
                }
                Some(text) => {
                    let spec = parse_match(text, &Self::port_ids(config)).map_err(bad_spec)?;
                    if p.strict {
                        let priority = spec.priority.unwrap_or(Rule::DEFAULT_PRIORITY);
                        usize::from(
                            config
                                .rules
                                .remove_strict(&spec.pattern, priority)
                                .is_some(),
                        )
                    } else {
                        config.rules.remove_matching(&spec.pattern).len()
                    }
                }
            };
            Ok(DelFlowsResult { deleted })
        })
    }

    fn binding(config: &Config, name: &str) -> Result<Binding, RpcError> {
        if let Some(port) = config.port_by_name(name) {
            return Ok(Binding::Port(port.id));
        }
        if let Some(vid) = name
            .strip_prefix("vlan")
            .and_then(|v| v.parse::<u16>().ok())
        {
            check_vid(vid)?;
            return Ok(Binding::Vlan(vid));
        }
        Err(RpcError::new(
            code::NO_SUCH_PORT,
            format!("no such port: {name} (or use vlanN for a VLAN)"),
        ))
    }

    fn change_addr(&mut self, p: AddrParams, add: bool) -> Result<Empty, RpcError> {
        let binding = Self::binding(self.switch.config(), &p.name)?;
        let (addr, len) = match p.addr.split_once('/') {
            Some((a, l)) => (
                a.parse()
                    .map_err(|_| bad_spec(format!("{a:?} is not an IP address")))?,
                l.parse()
                    .map_err(|_| bad_spec(format!("{l:?} is not a prefix length")))?,
            ),
            None if !add => (
                p.addr
                    .parse()
                    .map_err(|_| bad_spec(format!("{:?} is not an IP address", p.addr)))?,
                0,
            ),
            None => {
                return Err(bad_spec(
                    "give the address with its length, e.g. 10.1.0.254/24",
                ));
            }
        };
        let mac = if add {
            p.mac
                .as_deref()
                .map(|m| m.parse().map_err(|e| bad_spec(format!("mac {m:?}: {e}"))))
                .transpose()?
        } else {
            None
        };
        self.update(|_, config| {
            if add {
                config.add_address(binding, addr, len, mac)
            } else {
                config.remove_address(binding, addr)
            }
            .map_err(bad_spec)?;
            Ok(Empty)
        })
    }

    fn change_route(&mut self, p: RouteParams, add: bool) -> Result<Empty, RpcError> {
        let (prefix, len) = parse_prefix(&p.prefix).map_err(bad_spec)?;
        let via = if add {
            let via = p
                .via
                .as_deref()
                .ok_or_else(|| bad_spec("a static route needs a next hop (via)"))?;
            Some(
                via.parse()
                    .map_err(|_| bad_spec(format!("next hop {via:?} is not an IP address")))?,
            )
        } else {
            None
        };
        self.update(|_, config| {
            match via {
                Some(via) => config.add_route(prefix, len, via),
                None => config.remove_route(prefix, len),
            }
            .map_err(bad_spec)?;
            Ok(Empty)
        })
    }
}
