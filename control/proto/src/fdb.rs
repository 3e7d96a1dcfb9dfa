//! The MAC learning table: `fdb-show`.

use serde::{Deserialize, Serialize};

/// The result of `fdb-show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbShowResult {
    /// The entries, by VLAN then MAC.
    pub entries: Vec<FdbEntry>,
    /// The most entries the table holds (`xvsd --mac-max`).
    #[serde(default)]
    pub capacity: usize,
    /// Frames whose source was not learned because the table was full of live entries
    /// (known addresses keep their ports meanwhile; new ones are flooded to).
    #[serde(default)]
    pub not_learned: u64,
}

/// A learned (or static) address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The MAC.
    pub mac: String,
    /// The internal VLAN (0: none).
    pub vlan: u16,
    /// The port it was seen on (null if the port went away meanwhile).
    pub port: Option<String>,
    /// Seconds since it was last seen.
    pub age_s: f64,
    /// Configured, not learned.
    #[serde(rename = "static")]
    pub is_static: bool,
}
