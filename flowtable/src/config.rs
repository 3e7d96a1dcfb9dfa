//! The switch configuration that decisions depend on: ports, their VLANs, learning limits.
//!
//! A `Config` is immutable once published: the control plane builds a new one for every
//! change and hands it to each pipeline, which then forgets every decision it cached under the
//! old one.

use core::fmt;
use core::net::IpAddr;
use std::collections::BTreeMap;

use crate::mac_table;
use crate::port::{EgressTag, NO_VLAN, PortId, VlanMode};
use crate::route::{RouteError, RouteTable};
use crate::tables::Tables;
use crate::wire::EthernetAddress;

/// The default loop guard: far above what hosts send (ARP, ND, mDNS come in tens per second)
/// and far below a frame circulating in a loop (millions per second).
pub const DEFAULT_LOOP_GUARD_PPS: u32 = 20_000;

/// How long the loop guard blocks a port's broadcast and multicast frames.
pub const LOOP_GUARD_BLOCK_NS: u64 = 5_000_000_000;

/// A port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The port number.
    pub id: PortId,
    /// The interface name, for messages.
    pub name: String,
    /// The interface's MAC address.
    pub mac: EthernetAddress,
    /// How the port treats VLAN tags.
    pub vlan: VlanMode,
    /// Port security and storm control.
    pub security: PortSecurity,
}

/// What a port lets in, beyond VLANs: port security as switches and OVS offer it, and a
/// broadcast storm limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// The only source MACs the port takes (empty: any). Frames from others are dropped
    /// ([`DropReason::MacLock`](crate::action::DropReason::MacLock)) before any rule.
    pub mac_lock: Vec<EthernetAddress>,
    /// The most MAC addresses learned on the port: a frame from a new source past it is
    /// dropped ([`DropReason::MacLimit`](crate::action::DropReason::MacLimit)) and the source
    /// not learned; known sources keep forwarding.
    pub mac_limit: Option<u32>,
    /// The most broadcast and multicast frames per second the port takes in; the rest are
    /// dropped ([`DropReason::Storm`](crate::action::DropReason::Storm)).
    pub storm_limit: Option<u32>,
}

/// Where a router interface lives: on one port, or on a whole VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Binding {
    /// On one port, in that port's untagged VLAN.
    Port(PortId),
    /// On every port of a VLAN.
    Vlan(u16),
}

/// A router interface: addresses the switch owns on a port or a VLAN, and the MAC it answers
/// with. Traffic to that MAC enters the L3 pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterIf {
    /// Its name: the port's name, or `vlanN`.
    pub name: String,
    /// Where it lives.
    pub binding: Binding,
    /// The internal VLAN it is in (for a port binding, the port's untagged VLAN).
    pub vlan: u16,
    /// Its MAC address.
    pub mac: EthernetAddress,
    /// Its addresses with their prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
}

impl RouterIf {
    /// The port it is bound to, if any.
    pub fn port(&self) -> Option<PortId> {
        match self.binding {
            Binding::Port(p) => Some(p),
            Binding::Vlan(_) => None,
        }
    }

    /// Whether traffic arriving on `port` in `vlan` can reach it.
    pub fn serves(&self, vlan: u16, port: PortId) -> bool {
        self.vlan == vlan && self.port().is_none_or(|p| p == port)
    }

    /// Its address in the prefix that contains `ip` (the source for reaching `ip`), or else
    /// its first address of the same family.
    pub fn source_for(&self, ip: IpAddr) -> Option<IpAddr> {
        let same_family = |a: &IpAddr| a.is_ipv4() == ip.is_ipv4();
        self.addrs
            .iter()
            .find(|(a, len)| same_family(a) && prefix_of(*a, *len) == prefix_of(ip, *len))
            .or_else(|| self.addrs.iter().find(|(a, _)| same_family(a)))
            .map(|(a, _)| *a)
    }
}

/// The network of `addr/len`.
pub fn prefix_of(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// Where a route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// A network on router interface `index` (of [`Config::interfaces`]).
    Connected(usize),
    /// A next hop, itself reached through a connected route.
    Via(IpAddr),
}

/// Why a router or route change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A bad prefix.
    Route(RouteError),
    /// The address is configured already (here or on another interface).
    AddressInUse(IpAddr),
    /// No such address, interface or route.
    NotFound(String),
    /// A next hop of the wrong family.
    Family,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Route(e) => write!(f, "{e}"),
            ConfigError::AddressInUse(a) => write!(f, "{a} is already a router address"),
            ConfigError::NotFound(what) => write!(f, "no such {what}"),
            ConfigError::Family => f.write_str("prefix and next hop are of different families"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl From<RouteError> for ConfigError {
    fn from(e: RouteError) -> Self {
        ConfigError::Route(e)
    }
}

/// Everything a pipeline decides by, other than what it learns.
#[derive(Debug, Clone)]
pub struct Config {
    ports: BTreeMap<PortId, PortConfig>,
    /// Maximum number of learned MAC addresses.
    pub mac_capacity: usize,
    /// Age limit of learned MAC addresses, in nanoseconds.
    pub mac_max_age_ns: u64,
    /// The flow rules by table, consulted before the L2 pipeline; a miss in table 0 means
    /// `normal`, in a later table drop.
    pub rules: Tables,
    /// Loop protection: a port whose broadcast and multicast frames come in faster than this
    /// (per second) has them blocked for [`LOOP_GUARD_BLOCK_NS`] (0: off).
    pub loop_guard_pps: u32,
    interfaces: Vec<RouterIf>,
    static_routes: BTreeMap<(IpAddr, u8), IpAddr>,
    routes: RouteTable<RouteTarget>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ports: BTreeMap::new(),
            mac_capacity: mac_table::DEFAULT_CAPACITY,
            mac_max_age_ns: mac_table::DEFAULT_MAX_AGE_NS,
            rules: Tables::new(),
            loop_guard_pps: DEFAULT_LOOP_GUARD_PPS,
            interfaces: Vec::new(),
            static_routes: BTreeMap::new(),
            routes: RouteTable::new(),
        }
    }
}

impl Config {
    /// Adds or replaces a port (a router interface on it follows its untagged VLAN).
    pub fn set_port(&mut self, port: PortConfig) {
        let vlan = untagged_vlan(&port.vlan);
        for i in &mut self.interfaces {
            if i.binding == Binding::Port(port.id) {
                i.vlan = vlan;
            }
        }
        self.ports.insert(port.id, port);
    }

    /// Removes a port and any router interface bound to it; returns it.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortConfig> {
        let before = self.interfaces.len();
        self.interfaces.retain(|i| i.binding != Binding::Port(id));
        if self.interfaces.len() != before {
            self.rebuild_routes();
        }
        self.ports.remove(&id)
    }

    /// The router interfaces.
    pub fn interfaces(&self) -> &[RouterIf] {
        &self.interfaces
    }

    /// The router interface that answers for `mac` to traffic from `port` in `vlan`.
    pub fn router_by_mac(&self, vlan: u16, mac: EthernetAddress, port: PortId) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.mac == mac && i.serves(vlan, port))
    }

    /// The router interface serving `port`/`vlan` that owns `ip`.
    pub fn router_by_ip(&self, vlan: u16, ip: IpAddr, port: PortId) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.serves(vlan, port) && i.addrs.iter().any(|(a, _)| *a == ip))
    }

    /// Whether `ip` is an address of any router interface.
    pub fn is_router_ip(&self, ip: IpAddr) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addrs.iter().any(|(a, _)| *a == ip))
    }

    /// Adds `addr/len` to the router interface on `binding`, creating it (with `mac`, or the
    /// port's MAC, or a MAC derived from the VLAN) if needed.
    ///
    /// # Errors
    /// A bad length, the address already in use, or an unknown port.
    pub fn add_address(
        &mut self,
        binding: Binding,
        addr: IpAddr,
        len: u8,
        mac: Option<EthernetAddress>,
    ) -> Result<(), ConfigError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(ConfigError::Route(RouteError::BadLength {
                prefix: addr,
                len,
                max,
            }));
        }
        if self.is_router_ip(addr) {
            return Err(ConfigError::AddressInUse(addr));
        }
        let index = match self.interfaces.iter().position(|i| i.binding == binding) {
            Some(i) => i,
            None => {
                let (name, vlan, default_mac) = match binding {
                    Binding::Port(p) => {
                        let port = self
                            .ports
                            .get(&p)
                            .ok_or_else(|| ConfigError::NotFound(format!("port {p}")))?;
                        (port.name.clone(), untagged_vlan(&port.vlan), port.mac)
                    }
                    Binding::Vlan(v) => (
                        format!("vlan{v}"),
                        v,
                        EthernetAddress([0x02, 0x78, 0x76, 0x73, (v >> 8) as u8, v as u8]),
                    ),
                };
                self.interfaces.push(RouterIf {
                    name,
                    binding,
                    vlan,
                    mac: mac.unwrap_or(default_mac),
                    addrs: Vec::new(),
                });
                self.interfaces.len() - 1
            }
        };
        if let Some(mac) = mac {
            self.interfaces[index].mac = mac;
        }
        self.interfaces[index].addrs.push((addr, len));
        self.rebuild_routes();
        Ok(())
    }

    /// Removes `addr` from the router interface on `binding` (and the interface once it has no
    /// address left).
    ///
    /// # Errors
    /// [`ConfigError::NotFound`] if that interface does not have the address.
    pub fn remove_address(&mut self, binding: Binding, addr: IpAddr) -> Result<(), ConfigError> {
        let index = self
            .interfaces
            .iter()
            .position(|i| i.binding == binding && i.addrs.iter().any(|(a, _)| *a == addr))
            .ok_or_else(|| ConfigError::NotFound(format!("address {addr} there")))?;
        self.interfaces[index].addrs.retain(|(a, _)| *a != addr);
        if self.interfaces[index].addrs.is_empty() {
            self.interfaces.remove(index);
        }
        self.rebuild_routes();
        Ok(())
    }

    /// Adds (or replaces) a static route to `prefix/len` through `via`.
    ///
    /// # Errors
    /// A bad prefix, or a next hop of another family.
    pub fn add_route(&mut self, prefix: IpAddr, len: u8, via: IpAddr) -> Result<(), ConfigError> {
        if prefix.is_ipv4() != via.is_ipv4() {
            return Err(ConfigError::Family);
        }
        // Validate through the table itself.
        let mut probe: RouteTable<()> = RouteTable::new();
        probe.insert(prefix, len, ())?;
        self.static_routes.insert((prefix, len), via);
        self.rebuild_routes();
        Ok(())
    }

    /// Removes the static route to `prefix/len`.
    ///
    /// # Errors
    /// [`ConfigError::NotFound`] if there is none.
    pub fn remove_route(&mut self, prefix: IpAddr, len: u8) -> Result<(), ConfigError> {
        self.static_routes
            .remove(&(prefix, len))
            .ok_or_else(|| ConfigError::NotFound(format!("route {prefix}/{len}")))?;
        self.rebuild_routes();
        Ok(())
    }

    /// The routing table: connected networks of the router interfaces and static routes (a
    /// connected network wins over a static route to the same prefix).
    pub fn routes(&self) -> &RouteTable<RouteTarget> {
        &self.routes
    }

    /// The static routes as configured.
    pub fn static_routes(&self) -> impl Iterator<Item = (IpAddr, u8, IpAddr)> + '_ {
        self.static_routes.iter().map(|(&(p, l), &v)| (p, l, v))
    }

    fn rebuild_routes(&mut self) {
        let mut routes = RouteTable::new();
        for (&(prefix, len), &via) in &self.static_routes {
            let _ = routes.insert(prefix, len, RouteTarget::Via(via));
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            for &(addr, len) in &iface.addrs {
                let _ = routes.insert(prefix_of(addr, len), len, RouteTarget::Connected(i));
            }
        }
        self.routes = routes;
    }

    /// Resolves `dst` to (router interface, next-hop address).
    pub fn route(&self, dst: IpAddr) -> Option<(usize, IpAddr)> {
        match self.routes.lookup(dst)? {
            (_, _, RouteTarget::Connected(i)) => Some((*i, dst)),
            (_, _, RouteTarget::Via(via)) => match self.routes.lookup(*via)? {
                (_, _, RouteTarget::Connected(i)) => Some((*i, *via)),
                // A next hop must be on a connected network (no recursion beyond one level).
                (_, _, RouteTarget::Via(_)) => None,
            },
        }
    }

    /// A port by number.
    pub fn port(&self, id: PortId) -> Option<&PortConfig> {
        self.ports.get(&id)
    }

    /// A port by interface name.
    pub fn port_by_name(&self, name: &str) -> Option<&PortConfig> {
        self.ports.values().find(|p| p.name == name)
    }

    /// Every port, by number.
    pub fn ports(&self) -> impl Iterator<Item = &PortConfig> {
        self.ports.values()
    }

    /// Where a frame of internal VLAN `vlan` floods from port `except`: every other member
    /// port of the VLAN with the tag the frame must carry there.
    pub fn flood_targets(
        &self,
        vlan: u16,
        except: PortId,
    ) -> impl Iterator<Item = (PortId, EgressTag)> + '_ {
        self.ports
            .values()
            .filter(move |p| p.id != except)
            .filter_map(move |p| p.vlan.egress(vlan).map(|tag| (p.id, tag)))
    }
}

/// The internal VLAN of a port's untagged frames.
pub fn untagged_vlan(mode: &VlanMode) -> u16 {
    match mode {
        VlanMode::All => NO_VLAN,
        VlanMode::Access(n) => *n,
        VlanMode::Trunk { native, .. } => native.unwrap_or(NO_VLAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::default();
        for id in 1..=2 {
            c.set_port(PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 0, id as u8]),
                vlan: VlanMode::Access(10 * id),
                security: Default::default(),
            });
        }
        c
    }

    #[test]
    fn interfaces_and_connected_routes() {
        let mut c = config();
        let a: IpAddr = "10.1.0.254".parse().unwrap();
        c.add_address(Binding::Port(1), a, 24, None).unwrap();
        c.add_address(Binding::Vlan(20), "10.2.0.254".parse().unwrap(), 24, None)
            .unwrap();
        assert_eq!(
            c.add_address(Binding::Vlan(20), a, 24, None),
            Err(ConfigError::AddressInUse(a))
        );
        assert_eq!(c.interfaces()[0].vlan, 10);
        assert_eq!(c.interfaces()[0].mac, EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            c.route("10.1.0.7".parse().unwrap()),
            Some((0, "10.1.0.7".parse().unwrap()))
        );
        assert_eq!(c.route("10.3.0.1".parse().unwrap()), None);
        c.add_route("10.3.0.0".parse().unwrap(), 16, "10.2.0.1".parse().unwrap())
            .unwrap();
        assert_eq!(
            c.route("10.3.9.9".parse().unwrap()),
            Some((1, "10.2.0.1".parse().unwrap()))
        );
        assert!(c.router_by_ip(10, a, 1).is_some());
        assert!(c.router_by_ip(10, a, 2).is_none(), "bound to port 1 only");
        // The interface follows its port's VLAN.
        let mut p1 = c.port(1).unwrap().clone();
        p1.vlan = VlanMode::Access(30);
        c.set_port(p1);
        assert_eq!(c.interfaces()[0].vlan, 30);
        c.remove_address(Binding::Port(1), a).unwrap();
        assert_eq!(c.interfaces().len(), 1);
        assert_eq!(c.route("10.1.0.7".parse().unwrap()), None);
        assert!(c.remove_route("10.9.0.0".parse().unwrap(), 16).is_err());
        c.remove_port(2);
        assert!(
            c.add_route("10.3.0.1".parse().unwrap(), 16, "10.2.0.1".parse().unwrap())
                .is_err()
        );
    }
}
