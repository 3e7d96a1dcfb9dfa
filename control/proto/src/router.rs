//! The router: `add-addr`, `del-addr`, `show-addrs`, `add-route`, `del-route`,
//! `show-routes`, `show-neighbors`.

use serde::{Deserialize, Serialize};

/// The parameters of `add-addr` and `del-addr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddrParams {
    /// A port name, or `vlanN`.
    pub name: String,
    /// The address with its prefix length (`del-addr` also takes it without).
    pub addr: String,
    /// The MAC to answer with (`add-addr` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The parameters of `add-route` and `del-route`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteParams {
    /// The destination, e.g. `10.2.0.0/16`.
    pub prefix: String,
    /// The next hop (`add-route` only, where it is needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// The result of `show-addrs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowAddrsResult {
    /// The router interfaces.
    pub interfaces: Vec<InterfaceInfo>,
}

/// A router interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// Its name: the port's, or `vlanN`.
    pub name: String,
    /// The internal VLAN it is in.
    pub vlan: u16,
    /// The port it is bound to (null for a VLAN interface).
    pub port: Option<String>,
    /// The MAC it answers with.
    pub mac: String,
    /// Its addresses, `addr/len`.
    pub addrs: Vec<String>,
}

/// The result of `show-routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowRoutesResult {
    /// The routes.
    pub routes: Vec<RouteEntry>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RouteEntry {
    /// A network of a router interface.
    Connected {
        /// The network, `addr/len`.
        prefix: String,
        /// The router interface.
        dev: String,
    },
    /// A static route.
    Static {
        /// The destination, `addr/len`.
        prefix: String,
        /// The next hop.
        via: String,
        /// The router interface the next hop is on (null while it is on none).
        dev: Option<String>,
    },
}

/// The result of `show-neighbors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowNeighborsResult {
    /// The resolved next hops.
    pub neighbors: Vec<Neighbor>,
}

/// A next hop resolved by ARP or ND.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// Its IP address.
    pub ip: String,
    /// Its MAC.
    pub mac: String,
    /// The port it is behind (null if the port went away meanwhile).
    pub port: Option<String>,
    /// The internal VLAN.
    pub vlan: u16,
    /// Seconds since it was resolved.
    pub age_s: f64,
}
