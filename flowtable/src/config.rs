//! The switch configuration that decisions depend on: ports, their VLANs, learning limits.
//!
//! A `Config` is immutable once published: the control plane builds a new one for every
//! change and hands it to each pipeline, which then forgets every decision it cached under the
//! old one.

use std::collections::BTreeMap;

use crate::mac_table;
use crate::port::{EgressTag, PortId, VlanMode};
use crate::wire::EthernetAddress;

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
}

/// Everything a pipeline decides by, other than what it learns.
#[derive(Debug, Clone)]
pub struct Config {
    ports: BTreeMap<PortId, PortConfig>,
    /// Maximum number of learned MAC addresses.
    pub mac_capacity: usize,
    /// Age limit of learned MAC addresses, in nanoseconds.
    pub mac_max_age_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ports: BTreeMap::new(),
            mac_capacity: mac_table::DEFAULT_CAPACITY,
            mac_max_age_ns: mac_table::DEFAULT_MAX_AGE_NS,
        }
    }
}

impl Config {
    /// Adds or replaces a port.
    pub fn set_port(&mut self, port: PortConfig) {
        self.ports.insert(port.id, port);
    }

    /// Removes a port; returns it.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortConfig> {
        self.ports.remove(&id)
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
