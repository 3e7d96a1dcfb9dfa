//! Flow rules: `add-flow`, `add-flows`, `del-flows`, `dump-flows`.

use serde::{Deserialize, Serialize};

/// The parameters of `add-flow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowParams {
    /// The rule, in ovs-ofctl syntax.
    pub flow: String,
}

/// The result of `add-flow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFlowResult {
    /// The new rule's id.
    pub id: u32,
    /// The id of the rule it replaced (same match and priority), if any.
    pub replaced: Option<u32>,
}

/// The parameters of `add-flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsParams {
    /// The rules, in ovs-ofctl syntax.
    pub flows: Vec<String>,
}

/// The result of `add-flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFlowsResult {
    /// The new rules' ids, in order.
    pub ids: Vec<u32>,
}

/// The parameters of `del-flows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelFlowsParams {
    /// The match (every rule without one).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Only the rule with exactly this match and priority.
    #[serde(default)]
    pub strict: bool,
}

/// The result of `del-flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelFlowsResult {
    /// How many rules went.
    pub deleted: usize,
}

/// The result of `dump-flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFlowsResult {
    /// The rules, highest priority first, then by id.
    pub flows: Vec<FlowEntry>,
    /// What happens to a packet no rule matches (`normal`).
    pub table_miss: String,
}

/// A rule with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEntry {
    /// The rule's id.
    pub id: u32,
    /// Its priority.
    pub priority: u16,
    /// The rule in ovs-ofctl syntax, ports by name.
    pub flow: String,
    /// Packets it decided.
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
}
