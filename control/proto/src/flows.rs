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

/// The parameters of `dump-flows`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpFlowsParams {
    /// Only the rules this match covers (with `table=` and `cookie=V/M` as filters).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// The result of `dump-flows`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFlowsResult {
    /// The rules by table, then highest priority first, then by id.
    pub flows: Vec<FlowEntry>,
    /// What happens to a packet no rule of table 0 matches (`normal`); in later tables a
    /// miss drops.
    pub table_miss: String,
}

/// The parameters of `trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceParams {
    /// The packet, as a match: `in_port=P,tcp,nw_src=..,nw_dst=..,tp_dst=..` (fields not
    /// given are zero, but for a source MAC and a TTL, which get stand-ins).
    pub flow: String,
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceLine {
    /// How deep in resubmits (0: table 0).
    pub depth: u8,
    /// `table`, `rule`, `miss`, `conntrack` or `switch`.
    pub kind: String,
    /// The rule's id, for `rule` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// What happened.
    pub text: String,
}

/// The result of `trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceResult {
    /// The packet traced, as a match (with the stand-ins filled in).
    pub flow: String,
    /// What the daemon assumed for fields not given.
    pub assumed: Vec<String>,
    /// The steps.
    pub lines: Vec<TraceLine>,
    /// The final actions (`output:...`) or `drop (reason)`.
    pub decision: String,
    /// Whether a worker would cache the decision (its next packets skip the tables).
    pub cached: bool,
    /// Whether it would be offloaded to the kernel's fast path.
    pub kernel: bool,
}

/// The parameters of `dump-conntrack` and `flush-conntrack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackParams {
    /// Only this zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<u16>,
}

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Its zone.
    pub zone: u16,
    /// `tcp`, `udp`, `icmp` or the protocol number.
    pub proto: String,
    /// The original direction: `src=..,dst=..,sport=..,dport=..` (ICMP: `id=..`).
    pub orig: String,
    /// The state (`ESTABLISHED`, `SYN_SENT`, ...).
    pub state: String,
    /// Its mark.
    pub mark: u32,
}

/// The result of `dump-conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpConntrackResult {
    /// The connections.
    pub connections: Vec<ConnInfo>,
    /// Connections committed since the start.
    pub created: u64,
    /// Packets found invalid.
    pub invalid: u64,
    /// Commits refused because the table was full.
    pub full: u64,
}

/// The result of `flush-conntrack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushConntrackResult {
    /// How many connections went.
    pub flushed: usize,
}

/// A rule with its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowEntry {
    /// The rule's id.
    pub id: u32,
    /// Its table.
    #[serde(default)]
    pub table: u8,
    /// Its cookie.
    #[serde(default)]
    pub cookie: u64,
    /// Its priority.
    pub priority: u16,
    /// The rule in ovs-ofctl syntax, ports by name.
    pub flow: String,
    /// Packets it decided.
    pub n_packets: u64,
    /// Their bytes.
    pub n_bytes: u64,
}
