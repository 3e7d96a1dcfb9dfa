//! Adding, removing and setting up ports: `add-port`, `del-port`, `set-port`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{Internal, Publish};
use crate::vlan::VlanSpec;

/// A port's `external_ids`: what its creator recorded on it, for finding it again.
pub type ExternalIds = BTreeMap<String, String>;

/// The parameters of `add-port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPortParams {
    /// The interface.
    pub name: String,
    /// Serve only the first N queues (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u32>,
    /// Force the kernel hook: `tc` (tcx ingress) or `xdp` (default: xvsd's `--hook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    /// Force the XDP mode: `drv` (or `native`), `skb` (or `generic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<String>,
    /// The VLAN mode (default: every VLAN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanSpec>,
    /// Recorded on the port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_ids: ExternalIds,
    /// Lock the port to these source MACs (default: any source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mac_lock: Vec<String>,
    /// Make an internal port: xvsd creates the interface, for the host (see
    /// [`Internal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<Internal>,
    /// Host ports forwarded to a container behind the port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
}

/// The result of `add-port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPortResult {
    /// The port number the switch gave it.
    pub id: u16,
    /// The interface.
    pub name: String,
}

/// Parameters naming one port (`del-port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortName {
    /// The port's interface name.
    pub name: String,
}

/// The parameters of `set-port`: each setting given is changed, the others stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPortParams {
    /// The port.
    pub name: String,
    /// Its new VLAN mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanSpec>,
    /// The most MACs learned on it (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_limit: Option<u32>,
    /// The only source MACs it takes (empty: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_lock: Option<Vec<String>>,
    /// The most broadcast and multicast frames per second it takes in (0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm_limit: Option<u32>,
    /// Masquerade what an internal port's subnets send out (internal ports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<bool>,
}
