//! The desired state: what the operator asked a daemon for, by name, apart from what the
//! switch has made of it.
//!
//! xvsd changes one [`DesiredState`] on every command and then makes the switch match it;
//! showing, saving and restoring a configuration all read this one type. Ports are named by
//! interface name, never by the numbers the switch gives them, so intent survives a port
//! being removed and added again under another number.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::ports::ExternalIds;
use crate::vlan::VlanSpec;

/// Everything xvsd was asked to do and still does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// The ports, by interface name.
    #[serde(default)]
    pub ports: BTreeMap<String, Port>,
    /// The flow rules, in the order they were added.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// The router interfaces, in the order they got their first address.
    #[serde(default)]
    pub interfaces: Vec<RouterInterface>,
    /// The static routes.
    #[serde(default)]
    pub routes: Vec<StaticRoute>,
    /// Whether the in-kernel fast path is on.
    #[serde(default)]
    pub fast_path: bool,
}

/// A port's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Serve only the first N queues (default: all). Applies when the port is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u32>,
    /// The hook asked for (`tc`, `xdp`; default: xvsd's choice for the device). Applies when
    /// the port is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// The XDP mode asked for (`drv`, `skb`; default: the best the driver has). Applies when
    /// the port is added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// The VLAN mode.
    #[serde(default)]
    pub vlan: VlanSpec,
    /// What its creator recorded on it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
    /// The only source MACs it takes (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mac_lock: Vec<String>,
    /// The most MACs learned on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// The most broadcast and multicast frames per second it takes in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_limit: Option<u32>,
    /// Set on an internal port: the host's own interface on the switch, which xvsd makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<Internal>,
    /// Host ports forwarded to a container behind this port (DNAT by the host's kernel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
}

/// What makes a port internal: xvsd creates a veth pair, `NAME` in the host's namespace (with
/// these addresses, up) and a hidden peer (see [`internal_peer`]) which is the switch port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Internal {
    /// The host interface's addresses, `addr/len`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// Masquerade what the port's IPv4 subnets send out through the host's other interfaces
    /// (and turn on the host's IPv4 forwarding).
    #[serde(default)]
    pub masquerade: bool,
}

/// Longest name of an internal port: its peer's name is the name and [`INTERNAL_SUFFIX`],
/// and must fit IFNAMSIZ.
pub const MAX_INTERNAL_NAME: usize = 15 - INTERNAL_SUFFIX.len();
/// What an internal port's peer (the switch side) has after the port's name.
pub const INTERNAL_SUFFIX: &str = "-sw";

/// The switch side of internal port `name`: the interface the switch attaches to.
pub fn internal_peer(name: &str) -> String {
    format!("{name}{INTERNAL_SUFFIX}")
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Its name, as nft and `--publish` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A published port: connections to `host_port` of any of the host's addresses go to
/// `addr:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The host's port.
    pub host_port: u16,
    /// The container's port.
    pub port: u16,
    /// TCP or UDP.
    #[serde(default)]
    pub proto: Proto,
    /// The container's address.
    pub addr: Ipv4Addr,
}

impl std::str::FromStr for Publish {
    type Err = String;

    /// Reads `HOSTPORT:PORT[/tcp|udp]` (the address is the container's, set by the caller;
    /// here it is unspecified).
    fn from_str(text: &str) -> Result<Publish, String> {
        let (ports, proto) = match text.split_once('/') {
            None => (text, Proto::Tcp),
            Some((ports, "tcp")) => (ports, Proto::Tcp),
            Some((ports, "udp")) => (ports, Proto::Udp),
            Some((_, other)) => return Err(format!("{other:?} is not tcp or udp")),
        };
        let (host, port) = ports
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not HOSTPORT:PORT[/tcp|udp]"))?;
        let number = |n: &str| match n.parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("{n:?} is not a port number (1-65535)")),
        };
        Ok(Publish {
            host_port: number(host)?,
            port: number(port)?,
            proto,
            addr: Ipv4Addr::UNSPECIFIED,
        })
    }
}

/// A flow rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its id: unique, never reused by the daemon that gave it.
    pub id: u32,
    /// Its priority (also in `flow`).
    pub priority: u16,
    /// The rule in canonical ovs-ofctl syntax, ports by name (a port the rule was given by a
    /// number that named no port stays a number).
    pub flow: String,
    /// When it was added (seconds since the Unix epoch), for a `hard_timeout` that outlives
    /// a restart; 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub added: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a router interface lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Binding {
    /// On one port (by name), in that port's untagged VLAN.
    Port(String),
    /// On every port of a VLAN.
    Vlan(u16),
}

impl Binding {
    /// Its name as the protocol spells it: the port's name, or `vlanN`.
    pub fn name(&self) -> String {
        match self {
            Binding::Port(port) => port.clone(),
            Binding::Vlan(vid) => format!("vlan{vid}"),
        }
    }
}

/// A router interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterInterface {
    /// Where it lives.
    pub on: Binding,
    /// The MAC it answers with (default: the port's, or one derived from the VLAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its addresses, `addr/len`, in the order they were added.
    pub addrs: Vec<String>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// The destination, `addr/len`.
    pub prefix: String,
    /// The next hop.
    pub via: IpAddr,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_state_reads_back_as_written() {
        let state = DesiredState {
            ports: BTreeMap::from([
                (
                    "veth1".to_owned(),
                    Port {
                        queues: Some(2),
                        hook: Some("xdp".into()),
                        xdp_mode: Some("skb".into()),
                        vlan: VlanSpec::Access { tag: 10 },
                        external_ids: BTreeMap::from([("owner".into(), "xvsctl".into())]),
                        mac_lock: vec!["02:00:00:00:00:01".into()],
                        mac_limit: Some(4),
                        storm_limit: Some(100),
                        internal: None,
                        publish: vec![Publish {
                            host_port: 8080,
                            port: 80,
                            proto: Proto::Tcp,
                            addr: "10.1.0.2".parse().unwrap(),
                        }],
                    },
                ),
                (
                    "br0".to_owned(),
                    Port {
                        internal: Some(Internal {
                            addrs: vec!["10.1.0.1/24".into()],
                            masquerade: true,
                        }),
                        ..Port::default()
                    },
                ),
                ("veth2".to_owned(), Port::default()),
            ]),
            rules: vec![Rule {
                id: 3,
                priority: 100,
                flow: "priority=100,in_port=veth1,actions=output:veth2".into(),
                added: 1_700_000_000,
            }],
            interfaces: vec![
                RouterInterface {
                    on: Binding::Vlan(10),
                    mac: None,
                    addrs: vec!["10.1.0.254/24".into()],
                },
                RouterInterface {
                    on: Binding::Port("veth2".into()),
                    mac: Some("02:00:00:00:00:fe".into()),
                    addrs: vec!["fd00::1/64".into()],
                },
            ],
            routes: vec![StaticRoute {
                prefix: "10.9.0.0/16".into(),
                via: "10.1.0.1".parse().unwrap(),
            }],
            fast_path: true,
        };
        let value = serde_json::to_value(&state).unwrap();
        assert_eq!(value["ports"]["veth2"], json!({"vlan": {"mode": "all"}}));
        assert_eq!(value["interfaces"][0]["on"], json!({"vlan": 10}));
        assert_eq!(value["interfaces"][1]["on"], json!({"port": "veth2"}));
        assert_eq!(value["routes"][0]["via"], "10.1.0.1");
        assert_eq!(
            serde_json::from_value::<DesiredState>(value).unwrap(),
            state
        );
        assert_eq!(
            serde_json::from_value::<DesiredState>(json!({})).unwrap(),
            DesiredState::default()
        );
        assert!(serde_json::from_value::<DesiredState>(json!({"prots": {}})).is_err());
    }

    #[test]
    fn published_ports_read_as_docker_writes_them() {
        let p: Publish = "8080:80".parse().unwrap();
        assert_eq!((p.host_port, p.port, p.proto), (8080, 80, Proto::Tcp));
        let p: Publish = "53:5353/udp".parse().unwrap();
        assert_eq!((p.host_port, p.port, p.proto), (53, 5353, Proto::Udp));
        assert!("80".parse::<Publish>().is_err());
        assert!("0:80".parse::<Publish>().is_err());
        assert!("80:80/sctp".parse::<Publish>().is_err());
        assert_eq!(internal_peer("br-int"), "br-int-sw");
        assert_eq!(MAX_INTERNAL_NAME, 12);
    }
}
