//! Adding, removing and setting up ports: `add-port`, `del-port`, `set-port`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// The parameters of `set-port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPortParams {
    /// The port.
    pub name: String,
    /// Its new VLAN mode.
    pub vlan: VlanSpec,
}
