//! The in-kernel fast path: `dump-fast-path`, `set-fast-path`.

use serde::{Deserialize, Serialize};

/// The result of `dump-fast-path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFastPathResult {
    /// Whether the fast path is on.
    pub enabled: bool,
    /// The flows the kernel forwards.
    pub entries: Vec<FastPathEntry>,
}

/// A flow the kernel forwards by XDP redirect (or drops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathEntry {
    /// Where it enters (null if the port went away meanwhile).
    pub in_port: Option<String>,
    /// Where it leaves (null when dropped).
    pub out_port: Option<String>,
    /// `redirect` or `drop`.
    pub action: String,
    /// Source MAC.
    pub dl_src: String,
    /// Destination MAC.
    pub dl_dst: String,
    /// EtherType, `0x0800`.
    pub dl_type: String,
    /// The rule that decided it, if one did.
    pub rule: Option<u32>,
    /// Packets the kernel forwarded.
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
}

/// The parameters of `set-fast-path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFastPathParams {
    /// On or off.
    pub on: bool,
}

/// The result of `set-fast-path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFastPathResult {
    /// Whether the fast path is on now.
    pub fast_path: bool,
}
