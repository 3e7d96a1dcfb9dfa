//! The control thread: owns the switch and answers requests, one at a time.

use std::collections::BTreeMap;

use dataplane::{Drop, PortOptions, Switch, SwitchError, XdpMode};
use flowtable::VlanMode;
use flowtable::port::MAX_VID;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::protocol::{Request, RpcError, code};

/// A command the daemon understands, with its parameters and what it does.
struct Command {
    name: &'static str,
    params: &'static str,
    help: &'static str,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "version",
        params: "",
        help: "daemon and protocol version",
    },
    Command {
        name: "list-commands",
        params: "",
        help: "this list",
    },
    Command {
        name: "show",
        params: "",
        help: "ports, queues, workers, uptime",
    },
    Command {
        name: "add-port",
        params: "name, queues?, xdp_mode? (drv|skb), vlan?, external_ids?",
        help: "switch an interface (hot add)",
    },
    Command {
        name: "del-port",
        params: "name",
        help: "give an interface back to the kernel",
    },
    Command {
        name: "set-port",
        params: "name, vlan",
        help: "set a port's VLAN mode",
    },
    Command {
        name: "dump-ports",
        params: "name?",
        help: "per-port and per-worker counters",
    },
    Command {
        name: "fdb-show",
        params: "",
        help: "the learned MAC table",
    },
    Command {
        name: "fdb-flush",
        params: "",
        help: "forget every learned MAC",
    },
];

/// A VLAN mode as the protocol spells it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum VlanSpec {
    /// Every VLAN, frames as they come.
    All,
    /// One VLAN, untagged on the wire.
    Access {
        /// The VLAN.
        tag: u16,
    },
    /// Several VLANs tagged, one optionally untagged.
    Trunk {
        /// The tagged VLANs.
        trunks: Vec<u16>,
        /// The untagged VLAN.
        #[serde(default)]
        native: Option<u16>,
    },
}

fn check_vid(vid: u16) -> Result<u16, RpcError> {
    if (1..=MAX_VID).contains(&vid) {
        Ok(vid)
    } else {
        Err(RpcError::params(format!(
            "VLAN {vid} is out of range 1-{MAX_VID}"
        )))
    }
}

impl VlanSpec {
    /// The dataplane's VLAN mode, after checking the VIDs.
    ///
    /// # Errors
    /// A VID outside 1-4094, or a trunk without VLANs.
    pub fn to_mode(&self) -> Result<VlanMode, RpcError> {
        Ok(match self {
            VlanSpec::All => VlanMode::All,
            VlanSpec::Access { tag } => VlanMode::Access(check_vid(*tag)?),
            VlanSpec::Trunk { trunks, native } => {
                if trunks.is_empty() && native.is_none() {
                    return Err(RpcError::params("a trunk needs at least one VLAN"));
                }
                let mut allowed = trunks
                    .iter()
                    .map(|&v| check_vid(v))
                    .collect::<Result<Vec<_>, _>>()?;
                allowed.sort_unstable();
                allowed.dedup();
                VlanMode::Trunk {
                    allowed,
                    native: native.map(check_vid).transpose()?,
                }
            }
        })
    }

    fn from_mode(mode: &VlanMode) -> VlanSpec {
        match mode {
            VlanMode::All => VlanSpec::All,
            VlanMode::Access(tag) => VlanSpec::Access { tag: *tag },
            VlanMode::Trunk { allowed, native } => VlanSpec::Trunk {
                trunks: allowed.clone(),
                native: *native,
            },
        }
    }
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

/// The daemon's state: the switch and what the control plane remembers about ports.
#[derive(Debug)]
pub struct Daemon {
    switch: Switch,
    external_ids: BTreeMap<String, BTreeMap<String, String>>,
}

impl Daemon {
    /// A daemon driving `switch`.
    pub fn new(switch: Switch) -> Daemon {
        Daemon {
            switch,
            external_ids: BTreeMap::new(),
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
        let p = &request.params;
        match request.method.as_str() {
            "version" => Ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "protocol": 1,
            })),
            "list-commands" => Ok(Value::Array(
                COMMANDS
                    .iter()
                    .map(|c| json!({"name": c.name, "params": c.params, "help": c.help}))
                    .collect(),
            )),
            "show" => Ok(self.show()),
            "add-port" => self.add_port(params(p)?),
            "del-port" => {
                let NameParam { name } = params(p)?;
                self.switch.del_port(&name).map_err(switch_error)?;
                self.external_ids.remove(&name);
                Ok(json!({}))
            }
            "set-port" => {
                let SetPortParams { name, vlan } = params(p)?;
                let mode = vlan.to_mode()?;
                self.switch
                    .set_port_vlan(&name, mode)
                    .map_err(switch_error)?;
                Ok(json!({}))
            }
            "dump-ports" => self.dump_ports(params(p)?),
            "fdb-show" => self.fdb_show(),
            "fdb-flush" => {
                self.switch.fdb_flush().map_err(switch_error)?;
                Ok(json!({}))
            }
            other => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("unknown command {other:?} (see list-commands)"),
            )),
        }
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
                    "xdp_mode": info.xdp_mode.name(),
                    "zero_copy": info.zero_copy,
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
            for cause in Drop::ALL {
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
        let entries: Vec<Value> = self
            .switch
            .fdb()
            .map_err(switch_error)?
            .into_iter()
            .map(|e| {
                json!({
                    "mac": e.mac.to_string(),
                    "vlan": e.vlan,
                    "port": config.port(e.port).map(|p| p.name.clone()),
                    "age_s": e.age_ns as f64 / 1e9,
                    "static": e.is_static,
                })
            })
            .collect();
        Ok(json!({"entries": entries}))
    }
}
