//! The control thread: owns the switch and answers requests, one at a time.

use std::collections::BTreeMap;

use dataplane::{DropCause, PortOptions, Switch, SwitchError, XdpMode};
use flowtable::config::{Binding, RouteTarget};
use flowtable::flow_spec::{format_flow, parse_flow, parse_match};
use flowtable::route::parse_prefix;
use flowtable::rule::Rule;
use flowtable::{Config, PortId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::protocol::{Request, RpcError, VlanSpec, check_vid, code};

/// What a command does: reads its parameters and answers.
type Handler = fn(&mut Daemon, &Value) -> Result<Value, RpcError>;

/// A command the daemon understands: the table is both the dispatch and `list-commands`.
struct Command {
    name: &'static str,
    params: &'static str,
    help: &'static str,
    run: Handler,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "version",
        params: "",
        help: "daemon and protocol version",
        run: |_, _| Ok(json!({"version": env!("CARGO_PKG_VERSION"), "protocol": 1})),
    },
    Command {
        name: "list-commands",
        params: "",
        help: "this list",
        run: |_, _| Ok(list_commands()),
    },
    Command {
        name: "show",
        params: "",
        help: "ports, queues, workers, uptime",
        run: |d, _| Ok(d.show()),
    },
    Command {
        name: "add-port",
        params: "name, queues?, xdp_mode? (drv|skb), vlan?, external_ids?",
        help: "switch an interface (hot add)",
        run: |d, p| d.add_port(params(p)?),
    },
    Command {
        name: "del-port",
        params: "name",
        help: "give an interface back to the kernel",
        run: |d, p| d.del_port(params(p)?),
    },
    Command {
        name: "set-port",
        params: "name, vlan",
        help: "set a port's VLAN mode",
        run: |d, p| d.set_port(params(p)?),
    },
    Command {
        name: "dump-ports",
        params: "name?",
        help: "per-port and per-worker counters",
        run: |d, p| d.dump_ports(params(p)?),
    },
    Command {
        name: "fdb-show",
        params: "",
        help: "the learned MAC table",
        run: |d, _| d.fdb_show(),
    },
    Command {
        name: "fdb-flush",
        params: "",
        help: "forget every learned MAC",
        run: |d, _| {
            d.switch.fdb_flush().map_err(switch_error)?;
            Ok(json!({}))
        },
    },
    Command {
        name: "add-flow",
        params: "flow",
        help: "add a rule (ovs-ofctl syntax); same match and priority replaces",
        run: |d, p| d.add_flow(params(p)?),
    },
    Command {
        name: "add-flows",
        params: "flows",
        help: "add several rules: all or none",
        run: |d, p| d.add_flows(params(p)?),
    },
    Command {
        name: "del-flows",
        params: "match?, strict?",
        help: "delete the rules a match covers (all without one)",
        run: |d, p| d.del_flows(params(p)?),
    },
    Command {
        name: "dump-flows",
        params: "",
        help: "the rules with their counters",
        run: |d, _| d.dump_flows(),
    },
    Command {
        name: "add-addr",
        params: "name (port or vlanN), addr (ip/len), mac?",
        help: "give the switch a router address",
        run: |d, p| d.change_addr(params(p)?, true),
    },
    Command {
        name: "del-addr",
        params: "name, addr",
        help: "remove a router address",
        run: |d, p| d.change_addr(params(p)?, false),
    },
    Command {
        name: "show-addrs",
        params: "",
        help: "the router interfaces and their addresses",
        run: |d, _| Ok(d.show_addrs()),
    },
    Command {
        name: "add-route",
        params: "prefix, via",
        help: "add a static route",
        run: |d, p| d.change_route(params(p)?, true),
    },
    Command {
        name: "del-route",
        params: "prefix",
        help: "remove a static route",
        run: |d, p| d.change_route(params(p)?, false),
    },
    Command {
        name: "show-routes",
        params: "",
        help: "connected and static routes",
        run: |d, _| Ok(d.show_routes()),
    },
    Command {
        name: "show-neighbors",
        params: "",
        help: "the resolved next hops",
        run: |d, _| d.show_neighbors(),
    },
    Command {
        name: "dump-fast-path",
        params: "",
        help: "the flows the kernel forwards",
        run: |d, _| d.dump_fast_path(),
    },
    Command {
        name: "set-fast-path",
        params: "on",
        help: "turn the in-kernel fast path on or off",
        run: |d, p| d.set_fast_path(params(p)?),
    },
];

fn list_commands() -> Value {
    Value::Array(
        COMMANDS
            .iter()
            .map(|c| json!({"name": c.name, "params": c.params, "help": c.help}))
            .collect(),
    )
}

fn params<T: DeserializeOwned>(value: &Value) -> Result<T, RpcError> {
    let value = if value.is_null() {
        json!({})
    } else {
        value.clone()
    };
    serde_json::from_value(value).map_err(|e| RpcError::params(format!("bad parameters: {e}")))
}

fn switch_error(e: SwitchError) -> RpcError {
    let code = match &e {
        SwitchError::NoSuchInterface(_) | SwitchError::NoSuchPort(_) => code::NO_SUCH_PORT,
        SwitchError::PortExists(_) => code::EXISTS,
        SwitchError::Invalid(_) => code::INVALID_PARAMS,
        _ => code::DATAPLANE,
    };
    RpcError::new(code, e.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParam {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPortParams {
    name: String,
    #[serde(default)]
    queues: Option<u32>,
    #[serde(default)]
    xdp_mode: Option<String>,
    #[serde(default)]
    vlan: Option<VlanSpec>,
    #[serde(default)]
    external_ids: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPortParams {
    name: String,
    vlan: VlanSpec,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DumpPortsParams {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FastPathParams {
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowParams {
    flow: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowsParams {
    flows: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DelFlowsParams {
    #[serde(default, rename = "match")]
    pattern: Option<String>,
    #[serde(default)]
    strict: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddrParams {
    name: String,
    addr: String,
    #[serde(default)]
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteParams {
    prefix: String,
    #[serde(default)]
    via: Option<String>,
}

fn bad_spec(message: impl std::fmt::Display) -> RpcError {
    RpcError::new(code::BAD_SPEC, message.to_string())
}

/// The daemon's state: the switch and what the control plane remembers about ports.
#[derive(Debug)]
pub struct Daemon {
    switch: Switch,
    external_ids: BTreeMap<String, BTreeMap<String, String>>,
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

    /// The switch.
    pub fn switch(&mut self) -> &mut Switch {
        &mut self.switch
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
    pub fn handle(&mut self, request: &Request) -> Result<Value, RpcError> {
        let method = request.method.as_str();
        let command = COMMANDS.iter().find(|c| c.name == method).ok_or_else(|| {
            RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("unknown command {method:?} (see list-commands)"),
            )
        })?;
        (command.run)(self, &request.params)
    }

    fn del_port(&mut self, p: NameParam) -> Result<Value, RpcError> {
        self.switch.del_port(&p.name).map_err(switch_error)?;
        self.external_ids.remove(&p.name);
        Ok(json!({}))
    }

    fn set_port(&mut self, p: SetPortParams) -> Result<Value, RpcError> {
        let mode = p.vlan.to_mode()?;
        self.switch
            .set_port_vlan(&p.name, mode)
            .map_err(switch_error)?;
        Ok(json!({}))
    }

    fn set_fast_path(&mut self, p: FastPathParams) -> Result<Value, RpcError> {
        self.switch.set_fast_path(p.on).map_err(switch_error)?;
        Ok(json!({"fast_path": self.switch.fast_path()}))
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

    fn port_names(config: &Config) -> impl Fn(PortId) -> Option<String> + '_ {
        |id| config.port(id).map(|p| p.name.clone())
    }

    fn port_ids(config: &Config) -> impl Fn(&str) -> Option<PortId> + '_ {
        |name| config.port_by_name(name).map(|p| p.id)
    }

    fn add_flow(&mut self, p: FlowParams) -> Result<Value, RpcError> {
        self.update(|d, config| {
            let spec = parse_flow(&p.flow, &Self::port_ids(config)).map_err(bad_spec)?;
            let id = d.next_rule_id();
            let replaced = config.rules.insert(spec.into_rule(id));
            Ok(json!({"id": id, "replaced": replaced.map(|r| r.id)}))
        })
    }

    /// Installs every rule or none: a bad spec is reported with its line number.
    fn add_flows(&mut self, p: FlowsParams) -> Result<Value, RpcError> {
        self.update(|d, config| {
            let mut ids = Vec::with_capacity(p.flows.len());
            for (n, flow) in p.flows.iter().enumerate() {
                let spec = parse_flow(flow, &Self::port_ids(config))
                    .map_err(|e| bad_spec(format!("flow {}: {e}", n + 1)))?;
                let id = d.next_rule_id();
                config.rules.insert(spec.into_rule(id));
                ids.push(id);
            }
            Ok(json!({"ids": ids}))
        })
    }

    fn del_flows(&mut self, p: DelFlowsParams) -> Result<Value, RpcError> {
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
            Ok(json!({"deleted": deleted}))
        })
    }

    fn dump_flows(&self) -> Result<Value, RpcError> {
        let config = self.switch.config().clone();
        let stats = self.switch.rule_stats().map_err(switch_error)?;
        let names = Self::port_names(&config);
        let flows: Vec<Value> = config
            .rules
            .iter()
            .map(|rule| {
                let (packets, bytes) = stats.get(&rule.id).copied().unwrap_or_default();
                json!({
                    "id": rule.id,
                    "priority": rule.priority,
                    "flow": format_flow(rule.priority, &rule.pattern, &rule.actions, &names),
                    "n_packets": packets,
                    "n_bytes": bytes,
                })
            })
            .collect();
        Ok(json!({"flows": flows, "table_miss": "normal"}))
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

    fn change_addr(&mut self, p: AddrParams, add: bool) -> Result<Value, RpcError> {
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
            Ok(json!({}))
        })
    }

    fn show_addrs(&self) -> Value {
        let config = self.switch.config().clone();
        let name = Self::port_names(&config);
        let interfaces: Vec<Value> = config
            .interfaces()
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "vlan": i.vlan,
                    "port": i.port().and_then(&name),
                    "mac": i.mac.to_string(),
                    "addrs": i.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"interfaces": interfaces})
    }

    fn change_route(&mut self, p: RouteParams, add: bool) -> Result<Value, RpcError> {
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
            Ok(json!({}))
        })
    }

    fn show_routes(&self) -> Value {
        let config = self.switch.config().clone();
        let routes: Vec<Value> = config
            .routes()
            .iter()
            .map(|(prefix, len, target)| match target {
                RouteTarget::Connected(i) => json!({
                    "prefix": format!("{prefix}/{len}"),
                    "type": "connected",
                    "dev": config.interfaces()[*i].name,
                }),
                RouteTarget::Via(via) => json!({
                    "prefix": format!("{prefix}/{len}"),
                    "type": "static",
                    "via": via.to_string(),
                    "dev": config.route(*via).map(|(i, _)| config.interfaces()[i].name.clone()),
                }),
            })
            .collect();
        json!({"routes": routes})
    }

    fn dump_fast_path(&self) -> Result<Value, RpcError> {
        let config = self.switch.config().clone();
        let name = Self::port_names(&config);
        let entries: Vec<Value> = self
            .switch
            .fast_path_dump()
            .map_err(switch_error)?
            .into_iter()
            .map(|e| {
                json!({
                    "in_port": name(e.in_port),
                    "out_port": e.out_port.and_then(&name),
                    "action": if e.out_port.is_some() { "redirect" } else { "drop" },
                    "dl_src": e.src.to_string(),
                    "dl_dst": e.dst.to_string(),
                    "dl_type": format!("0x{:04x}", e.ethertype),
                    "rule": e.rule,
                    "n_packets": e.packets,
                    "n_bytes": e.bytes,
                })
            })
            .collect();
        Ok(json!({"enabled": self.switch.fast_path(), "entries": entries}))
    }

    fn show_neighbors(&self) -> Result<Value, RpcError> {
        let config = self.switch.config().clone();
        let name = Self::port_names(&config);
        let entries: Vec<Value> = self
            .switch
            .neighbors()
            .map_err(switch_error)?
            .into_iter()
            .map(|n| {
                json!({
                    "ip": n.ip.to_string(),
                    "mac": n.mac.to_string(),
                    "port": name(n.port),
                    "vlan": n.vlan,
                    "age_s": n.age_ns as f64 / 1e9,
                })
            })
            .collect();
        Ok(json!({"neighbors": entries}))
    }

    fn add_port(&mut self, p: AddPortParams) -> Result<Value, RpcError> {
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
            .map(VlanSpec::to_mode)
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
        Ok(json!({"id": info.id, "name": info.name}))
    }

    fn show(&self) -> Value {
        let config = self.switch.config().clone();
        let entries = self.switch.fast_path_entries().unwrap_or_default();
        let ports: Vec<Value> = self
            .switch
            .ports()
            .into_iter()
            .map(|info| {
                let vlan = config
                    .port(info.id)
                    .map(|p| VlanSpec::from_mode(&p.vlan))
                    .unwrap_or(VlanSpec::All);
                json!({
                    "id": info.id,
                    "name": info.name,
                    "ifindex": info.ifindex,
                    "mac": info.mac.to_string(),
                    "driver": info.driver,
                    "xdp_mode": info.xdp_mode.map(|m| m.name()),
                    "zero_copy": info.zero_copy,
                    "fast_path": {
                        "active": info.fast_path,
                        "redirect_target": info.redirect_target,
                        "entries": entries.get(&info.id).copied().unwrap_or(0),
                    },
                    "queues": info.queues.iter().map(|q| json!({
                        "queue": q.queue, "worker": q.worker, "cpu": q.cpu,
                    })).collect::<Vec<_>>(),
                    "vlan": vlan,
                    "external_ids": self.external_ids.get(&info.name).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let workers: Vec<Value> = self
            .switch
            .workers()
            .into_iter()
            .map(|w| json!({"id": w.id, "cpu": w.cpu, "tid": w.tid}))
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.switch.uptime().as_secs_f64(),
            "fast_path": self.switch.fast_path(),
            "ports": ports,
            "workers": workers,
        })
    }

    fn dump_ports(&self, p: DumpPortsParams) -> Result<Value, RpcError> {
        let all = self.switch.port_counters();
        if let Some(name) = &p.name
            && !all.iter().any(|c| &c.name == name)
        {
            return Err(RpcError::new(
                code::NO_SUCH_PORT,
                format!("no such port: {name}"),
            ));
        }
        let drops_json = |stats: &dataplane::PortStats| {
            let mut map = serde_json::Map::new();
            for cause in DropCause::ALL {
                map.insert(cause.name().into(), json!(stats.drop_count(cause)));
            }
            Value::Object(map)
        };
        let ports: Vec<Value> = all
            .iter()
            .filter(|c| p.name.as_ref().is_none_or(|n| n == &c.name))
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "rx_packets": c.stats.rx_packets,
                    "rx_bytes": c.stats.rx_bytes,
                    "tx_packets": c.stats.tx_packets,
                    "tx_bytes": c.stats.tx_bytes,
                    "fast_path": {
                        "rx_packets": c.stats.kernel_rx_packets,
                        "tx_packets": c.stats.kernel_tx_packets,
                    },
                    "drops": drops_json(&c.stats),
                    "kernel": {
                        "rx_dropped": c.kernel.rx_dropped,
                        "rx_ring_full": c.kernel.rx_ring_full,
                        "rx_fill_ring_empty": c.kernel.rx_fill_ring_empty_descs,
                        "rx_invalid_descs": c.kernel.rx_invalid_descs,
                        "tx_invalid_descs": c.kernel.tx_invalid_descs,
                    },
                })
            })
            .collect();
        let names: BTreeMap<u16, String> = all.iter().map(|c| (c.id, c.name.clone())).collect();
        let workers: Vec<Value> = self
            .switch
            .workers()
            .into_iter()
            .map(|w| {
                let s = w.stats;
                json!({
                    "id": w.id,
                    "cpu": w.cpu,
                    "loops": s.loops,
                    "busy_loops": s.busy_loops,
                    "sleeps": s.sleeps,
                    "cache_hits": s.cache_hits,
                    "cache_misses": s.cache_misses,
                    "cache_entries": s.cache_entries,
                    "tx_kicks": s.tx_kicks,
                    "handoffs": s.handoffs,
                    "ports": w.ports.iter()
                        .filter(|(id, _)| p.name.as_ref().is_none_or(|n| names.get(id) == Some(n)))
                        .map(|(id, ps)| json!({
                            "name": names.get(id),
                            "rx_packets": ps.rx_packets,
                            "tx_packets": ps.tx_packets,
                            "drops": ps.total_drops(),
                        })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({"ports": ports, "workers": workers}))
    }

    fn fdb_show(&self) -> Result<Value, RpcError> {
        let config = self.switch.config().clone();
        let name = Self::port_names(&config);
        let entries: Vec<Value> = self
            .switch
            .fdb()
            .map_err(switch_error)?
            .into_iter()
            .map(|e| {
                json!({
                    "mac": e.mac.to_string(),
                    "vlan": e.vlan,
                    "port": name(e.port),
                    "age_s": e.age_ns as f64 / 1e9,
                    "static": e.is_static,
                })
            })
            .collect();
        Ok(json!({"entries": entries}))
    }
}
