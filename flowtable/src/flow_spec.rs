//! The `ovs-ofctl add-flow` syntax for rules: parsing and printing.
//!
//! ```text
//! priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:veth2
//! in_port=veth1,dl_dst=02:00:00:00:00:02/ff:ff:ff:00:00:00,actions=mod_dl_src:02:00:00:00:00:aa,dec_ttl,output:3
//! ```
//!
//! A flow is a list of `field=value` pairs and shorthands (`ip`, `tcp`, …) separated by
//! commas or spaces, then `actions=` and a comma-separated action list, which runs to the end
//! of the text. The fields, as in OVS:
//!
//! | field | value | stored in [`FlowKey`] |
//! |---|---|---|
//! | `priority` | 0–65535, default 32768 | (the rule's priority) |
//! | `in_port` | port name or number | `in_port` |
//! | `dl_src`, `dl_dst` | MAC, optional `/MAC` mask | `dl_src`, `dl_dst` |
//! | `dl_vlan` | VID 0–4095, or `0xffff` for "no tag" | `vlan` (`VLAN_PRESENT \| vid`, 0 untagged) |
//! | `vlan_tci` | `value[/mask]` within `0x1fff` (CFI bit + VID; PCP is not matched) | `vlan` |
//! | `dl_type` | EtherType, hex or decimal | `dl_type` |
//! | `nw_src`, `nw_dst` | IPv4, optional `/len` or `/dotted.mask` (needs `ip` or `arp`) | `nw_src`, `nw_dst` (low 32 bits) |
//! | `ipv6_src`, `ipv6_dst` | IPv6, optional `/len` or `/mask` (needs `ipv6`) | `nw_src`, `nw_dst` |
//! | `arp_spa`, `arp_tpa`, `arp_op` | IPv4 prefix; opcode (need `arp`) | `nw_src`, `nw_dst`, `nw_proto` |
//! | `nw_proto` | 0–255 (needs `ip`, `ipv6` or `arp`) | `nw_proto` |
//! | `tp_src`, `tp_dst` | 0–65535, optional `/mask` (need a protocol, e.g. `tcp`) | `tp_src`, `tp_dst` |
//! | `icmp_type`, `icmp_code` | 0–255 (need `icmp` or `icmp6`) | `tp_src`, `tp_dst` |
//!
//! Shorthands: `ip`, `ipv6`, `arp`, `tcp`, `udp`, `icmp`, `tcp6`, `udp6`, `icmp6`. Fields may
//! come in any order; prerequisites are checked once all are read. Host bits outside a mask
//! are ignored (`nw_dst=10.0.0.1/24` is `10.0.0.0/24`), as in OVS.
//!
//! Actions: `output:PORT`, `flood`, `normal`, `drop` (alone), `mod_dl_src:MAC`,
//! `mod_dl_dst:MAC`, `mod_vlan_vid:VID`, `strip_vlan`, `push_vlan:VID` (xvs's simplification:
//! push an 802.1Q tag with that VID), `dec_ttl`, `route`. Action names are case-insensitive.
//! `actions=` with nothing after it, like `actions=drop`, parses to `[Action::Drop]`.
//!
//! Ports are given by name or number: parsing takes a resolver of names, printing its
//! reverse, and numbers are always accepted as they are (a rule may name a port that does not
//! exist yet by its number).
//!
//! # Printing and round trips
//! [`format_flow`] prints fields in a fixed order, with shorthands where they apply and masks
//! only where not full, so that parsing the printed text gives back the same rule. This holds
//! for every rule the parser can produce; a [`Match`] built in code that the syntax cannot
//! express (say a masked `dl_type`) prints as closely as it can and may not parse back.
//!
//! # Errors
//! A [`FlowSpecError`] names the offending token, says what is wrong with it, and gives its
//! byte offset in the text (shown as a 1-based column).

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::key::{FlowKey, VLAN_PRESENT};
use crate::port::PortId;
use crate::rule::{Action, Match, Rule};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress};

/// A flow as written for `add-flow`: everything of a [`Rule`] but its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// The priority (default [`Rule::DEFAULT_PRIORITY`]).
    pub priority: u16,
    /// The match.
    pub pattern: Match,
    /// The actions; never empty when parsed (`[Action::Drop]` for a dropping flow).
    pub actions: Vec<Action>,
}

impl FlowSpec {
    /// The rule of this flow, under `id`.
    pub fn into_rule(self, id: u32) -> Rule {
        Rule {
            id,
            priority: self.priority,
            pattern: self.pattern,
            actions: self.actions,
        }
    }
}

impl From<&Rule> for FlowSpec {
    fn from(rule: &Rule) -> FlowSpec {
        FlowSpec {
            priority: rule.priority,
            pattern: rule.pattern,
            actions: rule.actions.clone(),
        }
    }
}

/// Prints with port numbers; use [`format_flow`] for names.
impl fmt::Display for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_flow(
            self.priority,
            &self.pattern,
            &self.actions,
            &|_| None,
        ))
    }
}

/// A match as written for `del-flows` (no actions; the priority only counts with
/// `--strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchSpec {
    /// The priority, if one was given.
    pub priority: Option<u16>,
    /// The match.
    pub pattern: Match,
}

/// Why a flow could not be parsed. Every variant with an `offset` points at the offending
/// token: a byte offset into the text, shown as a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowSpecError {
    /// A field name that is not one of ours.
    #[error("unknown field \"{name}\"{}, at column {}", did_you_mean(*.suggestion), .offset + 1)]
    UnknownField {
        /// Where the token starts.
        offset: usize,
        /// The name as written.
        name: String,
        /// A known field with a similar name.
        suggestion: Option<&'static str>,
    },
    /// An OVS field or flow attribute that xvs does not implement.
    #[error("{token}: not supported by xvs, at column {}", .offset + 1)]
    Unsupported {
        /// Where the token starts.
        offset: usize,
        /// The token.
        token: String,
    },
    /// A value that does not parse or is out of range.
    #[error("{token}: {reason}, at column {}", .offset + 1)]
    Invalid {
        /// Where the token starts.
        offset: usize,
        /// The whole token, e.g. `nw_dst=10.0.0.300/24`.
        token: String,
        /// What is wrong, e.g. "not an IPv4 address or prefix".
        reason: String,
    },
    /// A port name the resolver does not know.
    #[error("{token}: no such port, at column {}", .offset + 1)]
    NoSuchPort {
        /// Where the token starts.
        offset: usize,
        /// The token, e.g. `output:veth9`.
        token: String,
    },
    /// A field given without the protocol it belongs to.
    #[error("{field} needs {needs} (add \"{add},\" before it), at column {}", .offset + 1)]
    MissingPrerequisite {
        /// Where the field starts.
        offset: usize,
        /// The field.
        field: &'static str,
        /// What it needs, in words.
        needs: &'static str,
        /// The shorthand to add.
        add: &'static str,
    },
    /// A field set twice to different values (e.g. `tcp,udp`).
    #[error("{token} conflicts with the earlier {earlier}, at column {}", .offset + 1)]
    Conflict {
        /// Where the later token starts.
        offset: usize,
        /// The later token.
        token: String,
        /// The earlier token.
        earlier: String,
    },
    /// A match field after `actions=`.
    #[error("{token}: actions= must come last, at column {}", .offset + 1)]
    ActionsNotLast {
        /// Where the token starts.
        offset: usize,
        /// The match field found among the actions.
        token: String,
    },
    /// An action name that is not one of ours.
    #[error("unknown action \"{token}\"{}, at column {}", did_you_mean(*.suggestion), .offset + 1)]
    UnknownAction {
        /// Where the action starts.
        offset: usize,
        /// The action as written.
        token: String,
        /// A known action with a similar name.
        suggestion: Option<&'static str>,
    },
    /// `drop` together with other actions.
    #[error("drop must be the only action, at column {}", .offset + 1)]
    DropNotAlone {
        /// Where `drop` starts.
        offset: usize,
    },
    /// A flow for `add-flow` without `actions=`.
    #[error("no actions given (end the flow with actions=..., e.g. actions=drop)")]
    MissingActions,
    /// `actions=` where only a match is wanted (`del-flows`).
    #[error("{token}: actions are not allowed here, at column {}", .offset + 1)]
    ActionsNotAllowed {
        /// Where `actions=` starts.
        offset: usize,
        /// The token.
        token: String,
    },
}

impl FlowSpecError {
    /// The byte offset of the offending token, if the error is about one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            FlowSpecError::UnknownField { offset, .. }
            | FlowSpecError::Unsupported { offset, .. }
            | FlowSpecError::Invalid { offset, .. }
            | FlowSpecError::NoSuchPort { offset, .. }
            | FlowSpecError::MissingPrerequisite { offset, .. }
            | FlowSpecError::Conflict { offset, .. }
            | FlowSpecError::ActionsNotLast { offset, .. }
            | FlowSpecError::UnknownAction { offset, .. }
            | FlowSpecError::DropNotAlone { offset }
            | FlowSpecError::ActionsNotAllowed { offset, .. } => Some(*offset),
            FlowSpecError::MissingActions => None,
        }
    }
}

fn did_you_mean(suggestion: Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean \"{s}\"?)"))
}

/// Parses a flow for `add-flow`. `ports` resolves port names; numbers are taken as they are.
///
/// # Errors
/// A [`FlowSpecError`] for the first problem found, including a missing `actions=`.
///
/// # Examples
/// ```
/// use flowtable::flow_spec::parse_flow;
/// use flowtable::rule::Action;
///
/// let ports = |name: &str| (name == "veth2").then_some(2);
/// let flow = parse_flow("priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:veth2", &ports)?;
/// assert_eq!(flow.priority, 100);
/// assert_eq!(flow.actions, [Action::Output(2)]);
/// # Ok::<(), flowtable::flow_spec::FlowSpecError>(())
/// ```
pub fn parse_flow(
    text: &str,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<FlowSpec, FlowSpecError> {
    let (tokens, actions) = split(text);
    let (priority, pattern) = parse_fields(&tokens, ports)?;
    let Some((actions_offset, actions_text)) = actions else {
        return Err(FlowSpecError::MissingActions);
    };
    Ok(FlowSpec {
        priority: priority.unwrap_or(Rule::DEFAULT_PRIORITY),
        pattern,
        actions: parse_actions(actions_text, actions_offset, ports)?,
    })
}

/// Parses a match for `del-flows` (`priority` is allowed, for `--strict`; `actions=` is not).
///
/// # Errors
/// A [`FlowSpecError`] for the first problem found.
pub fn parse_match(
    text: &str,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<MatchSpec, FlowSpecError> {
    let (tokens, actions) = split(text);
    if let Some((offset, _)) = actions {
        let start = offset - "actions=".len();
        return Err(FlowSpecError::ActionsNotAllowed {
            offset: start,
            token: text[start..].trim_end().to_string(),
        });
    }
    let (priority, pattern) = parse_fields(&tokens, ports)?;
    Ok(MatchSpec { priority, pattern })
}

/// One token of the text and where it starts.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    offset: usize,
}

fn is_separator(c: char) -> bool {
    c == ',' || c.is_ascii_whitespace()
}

/// Splits the match part into tokens, and finds the action list (offset, text) after
/// `actions=`.
fn split(text: &str) -> (Vec<Token<'_>>, Option<(usize, &str)>) {
    let mut tokens = Vec::new();
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start_matches(is_separator);
        let offset = text.len() - trimmed.len();
        if trimmed.is_empty() {
            return (tokens, None);
        }
        if let Some(actions) = trimmed.strip_prefix("actions=") {
            return (tokens, Some((offset + "actions=".len(), actions)));
        }
        let end = trimmed.find(is_separator).unwrap_or(trimmed.len());
        tokens.push(Token {
            text: &trimmed[..end],
            offset,
        });
        rest = &trimmed[end..];
    }
}

/// The parts of a [`FlowKey`] a field writes, for conflict and prerequisite checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    InPort,
    Vlan,
    DlSrc,
    DlDst,
    DlType,
    NwProto,
    NwSrc,
    NwDst,
    TpSrc,
    TpDst,
}

const SLOTS: usize = 10;

impl Slot {
    fn get(self, key: &FlowKey) -> u128 {
        match self {
            Slot::InPort => key.in_port.into(),
            Slot::Vlan => key.vlan.into(),
            Slot::DlSrc => key.dl_src.into(),
            Slot::DlDst => key.dl_dst.into(),
            Slot::DlType => key.dl_type.into(),
            Slot::NwProto => key.nw_proto.into(),
            Slot::NwSrc => key.nw_src,
            Slot::NwDst => key.nw_dst,
            Slot::TpSrc => key.tp_src.into(),
            Slot::TpDst => key.tp_dst.into(),
        }
    }

    /// Stores `value`, which the caller has range-checked for the field.
    fn set(self, key: &mut FlowKey, value: u128) {
        match self {
            Slot::InPort => key.in_port = value as u16,
            Slot::Vlan => key.vlan = value as u16,
            Slot::DlSrc => key.dl_src = value as u64,
            Slot::DlDst => key.dl_dst = value as u64,
            Slot::DlType => key.dl_type = value as u16,
            Slot::NwProto => key.nw_proto = value as u8,
            Slot::NwSrc => key.nw_src = value,
            Slot::NwDst => key.nw_dst = value,
            Slot::TpSrc => key.tp_src = value as u16,
            Slot::TpDst => key.tp_dst = value as u16,
        }
    }
}

/// A match field of the syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Priority,
    InPort,
    DlSrc,
    DlDst,
    DlVlan,
    VlanTci,
    DlType,
    NwSrc,
    NwDst,
    Ipv6Src,
    Ipv6Dst,
    ArpSpa,
    ArpTpa,
    ArpOp,
    NwProto,
    TpSrc,
    TpDst,
    IcmpType,
    IcmpCode,
}

const FIELDS: &[(&str, Field)] = &[
    ("priority", Field::Priority),
    ("in_port", Field::InPort),
    ("dl_src", Field::DlSrc),
    ("dl_dst", Field::DlDst),
    ("dl_vlan", Field::DlVlan),
    ("vlan_tci", Field::VlanTci),
    ("dl_type", Field::DlType),
    ("nw_src", Field::NwSrc),
    ("nw_dst", Field::NwDst),
    ("ipv6_src", Field::Ipv6Src),
    ("ipv6_dst", Field::Ipv6Dst),
    ("arp_spa", Field::ArpSpa),
    ("arp_tpa", Field::ArpTpa),
    ("arp_op", Field::ArpOp),
    ("nw_proto", Field::NwProto),
    ("tp_src", Field::TpSrc),
    ("tp_dst", Field::TpDst),
    ("icmp_type", Field::IcmpType),
    ("icmp_code", Field::IcmpCode),
    ("icmpv6_type", Field::IcmpType),
    ("icmpv6_code", Field::IcmpCode),
];

/// Shorthands: name, EtherType, IP protocol.
const SHORTHANDS: &[(&str, u16, Option<u8>)] = &[
    ("ip", EtherType::IPV4, None),
    ("ipv6", EtherType::IPV6, None),
    ("arp", EtherType::ARP, None),
    ("tcp", EtherType::IPV4, Some(Protocol::TCP)),
    ("udp", EtherType::IPV4, Some(Protocol::UDP)),
    ("icmp", EtherType::IPV4, Some(Protocol::ICMP)),
    ("tcp6", EtherType::IPV6, Some(Protocol::TCP)),
    ("udp6", EtherType::IPV6, Some(Protocol::UDP)),
    ("icmp6", EtherType::IPV6, Some(Protocol::ICMPV6)),
];

/// OVS match fields and flow attributes that xvs knows of but does not implement.
const UNSUPPORTED: &[&str] = &[
    "table",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "importance",
    "send_flow_rem",
    "out_port",
    "out_group",
    "dl_vlan_pcp",
    "vlan_pcp",
    "nw_tos",
    "nw_ecn",
    "ip_dscp",
    "ip_ecn",
    "nw_ttl",
    "nw_frag",
    "ip_frag",
    "tcp_flags",
    "arp_sha",
    "arp_tha",
    "ipv6_label",
    "nd_target",
    "nd_sll",
    "nd_tll",
    "tun_id",
    "metadata",
    "ct_state",
    "sctp",
    "sctp6",
    "rarp",
    "mpls",
];

fn field_names() -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .map(|(name, _)| *name)
        .chain(SHORTHANDS.iter().map(|(name, ..)| *name))
}

/// The state of a match being parsed.
struct Builder<'a> {
    value: FlowKey,
    mask: FlowKey,
    /// The token that set each slot, and the field name it used.
    set_by: [Option<(Token<'a>, &'static str)>; SLOTS],
    priority: Option<u16>,
}

impl<'a> Builder<'a> {
    fn new() -> Builder<'a> {
        Builder {
            value: FlowKey::default(),
            mask: FlowKey::default(),
            set_by: [None; SLOTS],
            priority: None,
        }
    }

    fn set(
        &mut self,
        slot: Slot,
        value: u128,
        mask: u128,
        token: Token<'a>,
        name: &'static str,
    ) -> Result<(), FlowSpecError> {
        let value = value & mask;
        if let Some((earlier, _)) = self.set_by[slot as usize] {
            if slot.get(&self.mask) == mask && slot.get(&self.value) == value {
                return Ok(());
            }
            return Err(FlowSpecError::Conflict {
                offset: token.offset,
                token: token.text.to_string(),
                earlier: earlier.text.to_string(),
            });
        }
        slot.set(&mut self.value, value);
        slot.set(&mut self.mask, mask);
        self.set_by[slot as usize] = Some((token, name));
        Ok(())
    }

    /// The exact value of a slot, if the match fixes it.
    fn exact(&self, slot: Slot) -> Option<u128> {
        self.set_by[slot as usize].map(|_| slot.get(&self.value))
    }

    /// Checks that every field comes with the protocol it belongs to.
    fn check_prerequisites(&self) -> Result<(), FlowSpecError> {
        let dl_type = self.exact(Slot::DlType).map(|t| t as u16);
        let nw_proto = self.exact(Slot::NwProto).map(|p| p as u8);
        let is_ip = matches!(dl_type, Some(EtherType::IPV4 | EtherType::IPV6));
        for (token, name) in self.set_by.iter().flatten() {
            let (ok, needs, add) = match *name {
                "nw_src" | "nw_dst" => (
                    matches!(dl_type, Some(EtherType::IPV4 | EtherType::ARP)),
                    "ip or arp",
                    "ip",
                ),
                "ipv6_src" | "ipv6_dst" => (dl_type == Some(EtherType::IPV6), "ipv6", "ipv6"),
                "arp_spa" | "arp_tpa" | "arp_op" => (dl_type == Some(EtherType::ARP), "arp", "arp"),
                "nw_proto" => (
                    is_ip || dl_type == Some(EtherType::ARP),
                    "ip, ipv6 or arp",
                    "ip",
                ),
                "tp_src" | "tp_dst" => (
                    is_ip && nw_proto.is_some(),
                    "a protocol such as tcp or udp",
                    "tcp",
                ),
                "icmp_type" | "icmp_code" => (
                    matches!(
                        (dl_type, nw_proto),
                        (Some(EtherType::IPV4), Some(Protocol::ICMP))
                            | (Some(EtherType::IPV6), Some(Protocol::ICMPV6))
                    ),
                    "icmp or icmp6",
                    "icmp",
                ),
                _ => (true, "", ""),
            };
            if !ok {
                return Err(FlowSpecError::MissingPrerequisite {
                    offset: token.offset,
                    field: name,
                    needs,
                    add,
                });
            }
        }
        Ok(())
    }
}

fn invalid(token: Token<'_>, reason: impl Into<String>) -> FlowSpecError {
    FlowSpecError::Invalid {
        offset: token.offset,
        token: token.text.to_string(),
        reason: reason.into(),
    }
}

fn parse_fields<'a>(
    tokens: &[Token<'a>],
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<(Option<u16>, Match), FlowSpecError> {
    let mut b = Builder::new();
    for &token in tokens {
        parse_field(&mut b, token, ports)?;
    }
    b.check_prerequisites()?;
    Ok((b.priority, Match::new(b.value, b.mask)))
}

fn parse_field<'a>(
    b: &mut Builder<'a>,
    token: Token<'a>,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<(), FlowSpecError> {
    let (name, value) = match token.text.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (token.text, None),
    };
    if let Some(&(short, dl_type, nw_proto)) = SHORTHANDS.iter().find(|(n, ..)| *n == name) {
        if value.is_some() {
            return Err(invalid(token, format!("{short} takes no value")));
        }
        b.set(Slot::DlType, dl_type.into(), 0xffff, token, "dl_type")?;
        if let Some(proto) = nw_proto {
            b.set(Slot::NwProto, proto.into(), 0xff, token, "nw_proto")?;
        }
        return Ok(());
    }
    let Some(&(field_name, field)) = FIELDS.iter().find(|(n, _)| *n == name) else {
        if UNSUPPORTED.contains(&name) {
            return Err(FlowSpecError::Unsupported {
                offset: token.offset,
                token: token.text.to_string(),
            });
        }
        return Err(FlowSpecError::UnknownField {
            offset: token.offset,
            name: name.to_string(),
            suggestion: closest(name, field_names()),
        });
    };
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Err(invalid(token, format!("{field_name} needs a value")));
    };
    match field {
        Field::Priority => {
            let p = parse_uint(value)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| invalid(token, "not a priority (0-65535)"))?;
            if b.priority.is_some_and(|earlier| earlier != p) {
                return Err(invalid(token, "priority given twice"));
            }
            b.priority = Some(p);
        }
        Field::InPort => {
            let port = resolve_port(value, ports).ok_or_else(|| FlowSpecError::NoSuchPort {
                offset: token.offset,
                token: token.text.to_string(),
            })?;
            b.set(Slot::InPort, port.into(), 0xffff, token, field_name)?;
        }
        Field::DlSrc | Field::DlDst => {
            let (mac, mask) = parse_mac_(value)
                .ok_or_else(|| invalid(token, "not a MAC address (or MAC/mask)"))?;
            let slot = if field == Field::DlSrc {
                Slot::DlSrc
            } else {
                Slot::DlDst
            };
            b.set(slot, mac.into(), mask.into(), token, field_name)?;
        }
        Field::DlVlan => {
            let vid = parse_uint(value)
                .filter(|&v| v <= 4095 || v == 0xffff)
                .ok_or_else(|| invalid(token, "not a VLAN id (0-4095, or 0xffff for no tag)"))?;
            let tci = if vid == 0xffff {
                0
            } else {
                vid | u128::from(VLAN_PRESENT)
            };
            b.set(Slot::Vlan, tci, VLAN_TCI_BITS.into(), token, field_name)?;
        }
        Field::VlanTci => {
            let (tci, mask) = parse_uint_(value, VLAN_TCI_BITS.into()).ok_or_else(|| {
                invalid(
                    token,
                    "not a TCI within 0x1fff (present bit 0x1000 and VID; PCP is not matched)",
                )
            })?;
            b.set(Slot::Vlan, tci, mask, token, field_name)?;
        }
        Field::DlType => {
            let t = parse_uint(value)
                .filter(|&t| t <= 0xffff)
                .ok_or_else(|| invalid(token, "not an EtherType (e.g. 0x0800)"))?;
            b.set(Slot::DlType, t, 0xffff, token, field_name)?;
        }
        Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa => {
            let (addr, mask) = parse_ipv4_prefix(value)
                .ok_or_else(|| invalid(token, "not an IPv4 address or prefix"))?;
            let slot = if matches!(field, Field::NwSrc | Field::ArpSpa) {
                Slot::NwSrc
            } else {
                Slot::NwDst
            };
            b.set(slot, addr.into(), mask.into(), token, field_name)?;
        }
        Field::Ipv6Src | Field::Ipv6Dst => {
            let (addr, mask) = parse_ipv6_prefix(value)
                .ok_or_else(|| invalid(token, "not an IPv6 address or prefix"))?;
            let slot = if field == Field::Ipv6Src {
                Slot::NwSrc
            } else {
                Slot::NwDst
            };
            b.set(slot, addr, mask, token, field_name)?;
        }
        Field::NwProto | Field::ArpOp => {
            let p = parse_uint(value)
                .filter(|&p| p <= 0xff)
                .ok_or_else(|| invalid(token, "not a number from 0 to 255"))?;
            b.set(Slot::NwProto, p, 0xff, token, field_name)?;
        }
        Field::TpSrc | Field::TpDst => {
            let (port, mask) = parse_uint_(value, 0xffff)
                .ok_or_else(|| invalid(token, "not a port number (0-65535, optional /mask)"))?;
            let slot = if field == Field::TpSrc {
                Slot::TpSrc
            } else {
                Slot::TpDst
            };
            b.set(slot, port, mask, token, field_name)?;
        }
        Field::IcmpType | Field::IcmpCode => {
            let v = parse_uint(value)
                .filter(|&v| v <= 0xff)
                .ok_or_else(|| invalid(token, "not a number from 0 to 255"))?;
            let (slot, name) = if field == Field::IcmpType {
                (Slot::TpSrc, "icmp_type")
            } else {
                (Slot::TpDst, "icmp_code")
            };
            b.set(slot, v, 0xffff, token, name)?;
        }
    }
    Ok(())
}

/// The bits of [`FlowKey::vlan`]: the present bit and the VID.
const VLAN_TCI_BITS: u16 = VLAN_PRESENT | 0x0fff;

/// A number in decimal or `0x` hex.
fn parse_uint(s: &str) -> Option<u128> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) => {
            u128::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

/// `value[/mask]`, both at most `max`; no mask means `max`.
fn parse_uint_(s: &str, max: u128) -> Option<(u128, u128)> {
    let (value, mask) = match s.split_once('/') {
        Some((v, m)) => (parse_uint(v)?, parse_uint(m)?),
        None => (parse_uint(s)?, max),
    };
    (value <= max && mask <= max).then_some((value, mask))
}

fn parse_mac_(s: &str) -> Option<(u64, u64)> {
    let (mac, mask) = match s.split_once('/') {
        Some((a, m)) => (a, m.parse::<EthernetAddress>().ok()?.to_u64()),
        None => (s, 0xffff_ffff_ffff),
    };
    Some((mac.parse::<EthernetAddress>().ok()?.to_u64(), mask))
}

fn prefix_mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - u32::from(width))
    }
}

/// `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m`.
fn parse_ipv4_prefix(s: &str) -> Option<(u32, u32)> {
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) if m.bytes().all(|c| c.is_ascii_digit()) => {
            let len: u8 = m.parse().ok().filter(|&l| l <= 32)?;
            (a, prefix_mask(len, 32) as u32)
        }
        Some((a, m)) => (a, u32::from(m.parse::<Ipv4Addr>().ok()?)),
        None => (s, u32::MAX),
    };
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), mask))
}

/// `addr`, `addr/len` or `addr/mask`.
fn parse_ipv6_prefix(s: &str) -> Option<(u128, u128)> {
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) if m.bytes().all(|c| c.is_ascii_digit()) => {
            let len: u8 = m.parse().ok().filter(|&l| l <= 128)?;
            (a, prefix_mask(len, 128))
        }
        Some((a, m)) => (a, u128::from(m.parse::<Ipv6Addr>().ok()?)),
        None => (s, u128::MAX),
    };
    Some((u128::from(addr.parse::<Ipv6Addr>().ok()?), mask))
}

fn resolve_port(s: &str, ports: &dyn Fn(&str) -> Option<PortId>) -> Option<PortId> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        ports(s)
    }
}

const ACTION_NAMES: &[&str] = &[
    "output",
    "flood",
    "normal",
    "drop",
    "mod_dl_src",
    "mod_dl_dst",
    "mod_vlan_vid",
    "strip_vlan",
    "push_vlan",
    "dec_ttl",
    "route",
];

fn parse_actions(
    text: &str,
    offset: usize,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Vec<Action>, FlowSpecError> {
    let mut actions = Vec::new();
    let mut drop_at = None;
    let mut start = 0;
    for part in text.split(',') {
        let trimmed = part.trim();
        let token = Token {
            text: trimmed,
            offset: offset + start + (part.len() - part.trim_start().len()),
        };
        start += part.len() + 1;
        if trimmed.is_empty() {
            continue;
        }
        match parse_action(token, ports)? {
            Action::Drop => drop_at = Some(token.offset),
            action => actions.push(action),
        }
    }
    match drop_at {
        Some(offset) if !actions.is_empty() => Err(FlowSpecError::DropNotAlone { offset }),
        _ if actions.is_empty() => Ok(vec![Action::Drop]),
        _ => Ok(actions),
    }
}

fn parse_action(
    token: Token<'_>,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Action, FlowSpecError> {
    let (name, arg) = match token.text.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (token.text, None),
    };
    let lower = name.to_ascii_lowercase();
    let needs_arg = |what: &str| invalid(token, format!("{lower} needs {what}, as {lower}:..."));
    let takes_no_arg = || invalid(token, format!("{lower} takes no argument"));
    let vid = |arg: &str, extra: &str| {
        parse_uint(arg)
            .filter(|&v| v <= 4095)
            .map(|v| v as u16)
            .ok_or_else(|| invalid(token, format!("not a VLAN id (0-4095){extra}")))
    };
    let mac = |arg: &str| {
        arg.parse::<EthernetAddress>()
            .map_err(|_| invalid(token, "not a MAC address"))
    };
    let action = match (lower.as_str(), arg) {
        ("output", Some(port)) => {
            Action::Output(
                resolve_port(port, ports).ok_or_else(|| FlowSpecError::NoSuchPort {
                    offset: token.offset,
                    token: token.text.to_string(),
                })?,
            )
        }
        ("output", None) => return Err(needs_arg("a port")),
        ("mod_dl_src", Some(arg)) => Action::SetDlSrc(mac(arg)?),
        ("mod_dl_dst", Some(arg)) => Action::SetDlDst(mac(arg)?),
        ("mod_dl_src" | "mod_dl_dst", None) => return Err(needs_arg("a MAC address")),
        ("mod_vlan_vid", Some(arg)) => Action::SetVlanVid(vid(arg, "")?),
        ("push_vlan", Some(arg)) => Action::PushVlan(vid(
            arg,
            "; xvs's push_vlan takes the VID of the new tag, whose TPID is always 0x8100",
        )?),
        ("mod_vlan_vid" | "push_vlan", None) => return Err(needs_arg("a VLAN id")),
        ("flood", None) => Action::Flood,
        ("normal", None) => Action::Normal,
        ("drop", None) => Action::Drop,
        ("strip_vlan", None) => Action::StripVlan,
        ("dec_ttl", None) => Action::DecTtl,
        ("route", None) => Action::Route,
        ("flood" | "normal" | "drop" | "strip_vlan" | "dec_ttl" | "route", Some(_)) => {
            return Err(takes_no_arg());
        }
        _ => {
            let field = token.text.split_once('=').map_or(token.text, |(n, _)| n);
            if field == "actions" {
                return Err(invalid(token, "actions= given twice"));
            }
            if field_names().any(|n| n == field) {
                return Err(FlowSpecError::ActionsNotLast {
                    offset: token.offset,
                    token: token.text.to_string(),
                });
            }
            return Err(FlowSpecError::UnknownAction {
                offset: token.offset,
                token: token.text.to_string(),
                suggestion: closest(&lower, ACTION_NAMES.iter().copied()),
            });
        }
    };
    Ok(action)
}

/// The candidate within two edits of `word`, if there is one (the nearest).
fn closest(word: &str, candidates: impl Iterator<Item = &'static str>) -> Option<&'static str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Prints a flow as `priority=P,<match>,actions=<actions>`, the form `dump-flows` shows
/// (counters are the caller's to add). `names` gives port names; ports it does not name
/// are printed as numbers.
///
/// # Examples
/// ```
/// use flowtable::flow_spec::{format_flow, parse_flow};
///
/// let ports = |name: &str| (name == "veth2").then_some(2);
/// let names = |port| (port == 2).then(|| "veth2".to_string());
/// let text = "tp_dst=80,priority=100,nw_dst=10.0.0.0/24,tcp,actions=output:veth2";
/// let flow = parse_flow(text, &ports)?;
/// assert_eq!(
///     format_flow(flow.priority, &flow.pattern, &flow.actions, &names),
///     "priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:veth2"
/// );
/// # Ok::<(), flowtable::flow_spec::FlowSpecError>(())
/// ```
pub fn format_flow(
    priority: u16,
    pattern: &Match,
    actions: &[Action],
    names: &dyn Fn(PortId) -> Option<String>,
) -> String {
    let mut out = format!("priority={priority}");
    let fields = format_match(pattern, names);
    if !fields.is_empty() {
        out.push(',');
        out.push_str(&fields);
    }
    out.push_str(",actions=");
    out.push_str(&format_actions(actions, names));
    out
}

/// Prints the fields of a match, comma-separated, in canonical order (empty for
/// [`Match::ANY`]).
pub fn format_match(pattern: &Match, names: &dyn Fn(PortId) -> Option<String>) -> String {
    let value = pattern.value();
    let mask = pattern.mask();
    let mut parts: Vec<String> = Vec::new();
    let dl_type = (mask.dl_type == 0xffff).then_some(value.dl_type);
    let nw_proto = (mask.nw_proto == 0xff).then_some(value.nw_proto);
    let mut proto_printed = false;

    // The protocol first, as a shorthand where one fits.
    match dl_type {
        Some(t @ (EtherType::IPV4 | EtherType::IPV6)) => {
            let v6 = t == EtherType::IPV6;
            let short = match (nw_proto, v6) {
                (Some(Protocol::TCP), false) => Some("tcp"),
                (Some(Protocol::UDP), false) => Some("udp"),
                (Some(Protocol::ICMP), false) => Some("icmp"),
                (Some(Protocol::TCP), true) => Some("tcp6"),
                (Some(Protocol::UDP), true) => Some("udp6"),
                (Some(Protocol::ICMPV6), true) => Some("icmp6"),
                _ => None,
            };
            proto_printed = short.is_some();
            parts.push(short.unwrap_or(if v6 { "ipv6" } else { "ip" }).to_string());
        }
        Some(EtherType::ARP) => parts.push("arp".to_string()),
        Some(t) => parts.push(format!("dl_type=0x{t:04x}")),
        None if mask.dl_type != 0 => {
            parts.push(format!(
                "dl_type=0x{:04x}/0x{:04x}",
                value.dl_type, mask.dl_type
            ));
        }
        None => {}
    }

    if mask.in_port != 0 {
        parts.push(format!("in_port={}", port_name(value.in_port, names)));
    }
    if mask.vlan == VLAN_TCI_BITS && (value.vlan == 0 || value.vlan & VLAN_PRESENT != 0) {
        match value.vlan {
            0 => parts.push("dl_vlan=0xffff".to_string()),
            tci => parts.push(format!("dl_vlan={}", tci & 0x0fff)),
        }
    } else if mask.vlan != 0 {
        parts.push(format!("vlan_tci=0x{:04x}/0x{:04x}", value.vlan, mask.vlan));
    }
    for (name, v, m) in [
        ("dl_src", value.dl_src, mask.dl_src),
        ("dl_dst", value.dl_dst, mask.dl_dst),
    ] {
        match m {
            0 => {}
            0xffff_ffff_ffff => parts.push(format!("{name}={}", EthernetAddress::from_u64(v))),
            m => parts.push(format!(
                "{name}={}/{}",
                EthernetAddress::from_u64(v),
                EthernetAddress::from_u64(m)
            )),
        }
    }

    let (src_name, dst_name, v6) = match dl_type {
        Some(EtherType::IPV6) => ("ipv6_src", "ipv6_dst", true),
        Some(EtherType::ARP) => ("arp_spa", "arp_tpa", false),
        _ => ("nw_src", "nw_dst", false),
    };
    for (name, v, m) in [
        (src_name, value.nw_src, mask.nw_src),
        (dst_name, value.nw_dst, mask.nw_dst),
    ] {
        if m != 0 {
            let prefix = if v6 {
                format_ipv6_prefix(v, m)
            } else {
                format_ipv4_prefix(v as u32, m as u32)
            };
            parts.push(format!("{name}={prefix}"));
        }
    }
    if mask.nw_proto != 0 && !proto_printed {
        let name = if dl_type == Some(EtherType::ARP) {
            "arp_op"
        } else {
            "nw_proto"
        };
        parts.push(format!("{name}={}", value.nw_proto));
    }

    let icmp = matches!(
        (dl_type, nw_proto),
        (Some(EtherType::IPV4), Some(Protocol::ICMP))
            | (Some(EtherType::IPV6), Some(Protocol::ICMPV6))
    );
    for (tp_name, icmp_name, v, m) in [
        ("tp_src", "icmp_type", value.tp_src, mask.tp_src),
        ("tp_dst", "icmp_code", value.tp_dst, mask.tp_dst),
    ] {
        match m {
            0 => {}
            0xffff if icmp && v <= 0xff => parts.push(format!("{icmp_name}={v}")),
            0xffff => parts.push(format!("{tp_name}={v}")),
            m => parts.push(format!("{tp_name}=0x{v:04x}/0x{m:04x}")),
        }
    }
    parts.join(",")
}

/// Prints actions, comma-separated (`drop` for none).
pub fn format_actions(actions: &[Action], names: &dyn Fn(PortId) -> Option<String>) -> String {
    if actions.is_empty() {
        return "drop".to_string();
    }
    let parts: Vec<String> = actions
        .iter()
        .map(|a| match a {
            Action::Output(port) => format!("output:{}", port_name(*port, names)),
            Action::Flood => "flood".to_string(),
            Action::Normal => "normal".to_string(),
            Action::Drop => "drop".to_string(),
            Action::SetDlSrc(mac) => format!("mod_dl_src:{mac}"),
            Action::SetDlDst(mac) => format!("mod_dl_dst:{mac}"),
            Action::SetVlanVid(vid) => format!("mod_vlan_vid:{vid}"),
            Action::StripVlan => "strip_vlan".to_string(),
            Action::PushVlan(vid) => format!("push_vlan:{vid}"),
            Action::DecTtl => "dec_ttl".to_string(),
            Action::Route => "route".to_string(),
        })
        .collect();
    parts.join(",")
}

/// Prints with port numbers.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_actions(core::slice::from_ref(self), &|_| None))
    }
}

/// The port's name if it has one that reads back as the same port, else its number.
fn port_name(port: PortId, names: &dyn Fn(PortId) -> Option<String>) -> String {
    names(port)
        .filter(|n| {
            !n.is_empty()
                && !n.bytes().all(|c| c.is_ascii_digit())
                && !n.contains(|c: char| is_separator(c) || c == '=')
        })
        .unwrap_or_else(|| port.to_string())
}

fn format_ipv4_prefix(addr: u32, mask: u32) -> String {
    let ip = Ipv4Addr::from(addr);
    match mask.leading_ones() {
        32 => ip.to_string(),
        len if mask.count_ones() == len => format!("{ip}/{len}"),
        _ => format!("{ip}/{}", Ipv4Addr::from(mask)),
    }
}

fn format_ipv6_prefix(addr: u128, mask: u128) -> String {
    let ip = Ipv6Addr::from(addr);
    match mask.leading_ones() {
        128 => ip.to_string(),
        len if mask.count_ones() == len => format!("{ip}/{len}"),
        _ => format!("{ip}/{}", Ipv6Addr::from(mask)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ports(name: &str) -> Option<PortId> {
        name.strip_prefix("veth")?
            .parse()
            .ok()
            .filter(|n| (1..=4).contains(n))
    }

    fn names(port: PortId) -> Option<String> {
        (1..=4).contains(&port).then(|| format!("veth{port}"))
    }

    fn parse(text: &str) -> Result<FlowSpec, FlowSpecError> {
        parse_flow(text, &ports)
    }

    fn print(flow: &FlowSpec) -> String {
        format_flow(flow.priority, &flow.pattern, &flow.actions, &names)
    }

    fn err(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    #[test]
    fn parses_tcp_to_a_prefix() {
        let flow =
            parse("priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:veth2").unwrap();
        assert_eq!(flow.priority, 100);
        assert_eq!(flow.actions, [Action::Output(2)]);
        let (v, m) = (flow.pattern.value(), flow.pattern.mask());
        assert_eq!((v.dl_type, m.dl_type), (0x0800, 0xffff));
        assert_eq!((v.nw_proto, m.nw_proto), (6, 0xff));
        assert_eq!((v.nw_dst, m.nw_dst), (0x0a00_0000, 0xffff_ff00));
        assert_eq!((v.tp_dst, m.tp_dst), (80, 0xffff));
        assert_eq!((m.in_port, m.nw_src, m.tp_src, m.dl_dst), (0, 0, 0, 0));
        let hit = FlowKey {
            in_port: 7,
            dl_type: 0x0800,
            nw_proto: 6,
            nw_src: 0x0102_0304,
            nw_dst: 0x0a00_0063,
            tp_src: 5555,
            tp_dst: 80,
            ..FlowKey::default()
        };
        assert!(flow.pattern.matches(&hit));
        assert!(!flow.pattern.matches(&FlowKey {
            nw_dst: 0x0a00_0163,
            ..hit
        }));
        assert_eq!(
            print(&flow),
            "priority=100,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=output:veth2"
        );
    }

    #[test]
    fn parses_masked_mac_and_action_list() {
        let flow = parse(
            "in_port=veth1,dl_dst=02:00:00:00:00:02/ff:ff:ff:00:00:00,\
             actions=mod_dl_src:02:00:00:00:00:aa,dec_ttl,output:3",
        )
        .unwrap();
        assert_eq!(flow.priority, Rule::DEFAULT_PRIORITY);
        let (v, m) = (flow.pattern.value(), flow.pattern.mask());
        assert_eq!((v.in_port, m.in_port), (1, 0xffff));
        assert_eq!((v.dl_dst, m.dl_dst), (0x0200_0000_0000, 0xffff_ff00_0000));
        assert_eq!(
            flow.actions,
            [
                Action::SetDlSrc(EthernetAddress([2, 0, 0, 0, 0, 0xaa])),
                Action::DecTtl,
                Action::Output(3)
            ]
        );
        assert_eq!(
            print(&flow),
            "priority=32768,in_port=veth1,dl_dst=02:00:00:00:00:00/ff:ff:ff:00:00:00,\
             actions=mod_dl_src:02:00:00:00:00:aa,dec_ttl,output:veth3"
        );
    }

    #[test]
    fn vlans() {
        let tagged = parse("dl_vlan=10,actions=strip_vlan,normal").unwrap();
        assert_eq!(tagged.pattern.value().vlan, VLAN_PRESENT | 10);
        assert_eq!(tagged.pattern.mask().vlan, 0x1fff);
        assert_eq!(tagged.actions, [Action::StripVlan, Action::Normal]);
        let untagged = parse("dl_vlan=0xffff,actions=push_vlan:20,mod_vlan_vid:30,flood").unwrap();
        assert_eq!(untagged.pattern.value().vlan, 0);
        assert_eq!(untagged.pattern.mask().vlan, 0x1fff);
        assert!(untagged.pattern.matches(&FlowKey::default()));
        assert!(!untagged.pattern.matches(&FlowKey {
            vlan: VLAN_PRESENT,
            ..FlowKey::default()
        }));
        assert_eq!(
            untagged.actions,
            [Action::PushVlan(20), Action::SetVlanVid(30), Action::Flood]
        );
        assert_eq!(
            print(&untagged),
            "priority=32768,dl_vlan=0xffff,actions=push_vlan:20,mod_vlan_vid:30,flood"
        );
        let any_tag = parse("vlan_tci=0x1000/0x1000,actions=drop").unwrap();
        assert_eq!(
            print(&any_tag),
            "priority=32768,vlan_tci=0x1000/0x1000,actions=drop"
        );
    }

    #[test]
    fn shorthands_and_protocol_fields() {
        for (text, printed) in [
            ("ip,nw_proto=6", "tcp"),
            ("dl_type=0x86dd,nw_proto=17", "udp6"),
            (
                "dl_type=2054,arp_op=1,arp_tpa=10.0.0.1",
                "arp,arp_tpa=10.0.0.1,arp_op=1",
            ),
            ("arp,nw_dst=10.0.0.1", "arp,arp_tpa=10.0.0.1"),
            (
                "icmp,icmp_type=8,icmp_code=0",
                "icmp,icmp_type=8,icmp_code=0",
            ),
            ("icmp6,icmpv6_type=135", "icmp6,icmp_type=135"),
            ("ipv6,ipv6_dst=2001:db8::/32", "ipv6,ipv6_dst=2001:db8::/32"),
            ("ip,nw_src=10.1.0.0/255.255.0.0", "ip,nw_src=10.1.0.0/16"),
            (
                "ip,nw_src=10.0.0.1/255.0.255.0",
                "ip,nw_src=10.0.0.0/255.0.255.0",
            ),
            ("tcp,tp_dst=0x1000/0xf000", "tcp,tp_dst=0x1000/0xf000"),
            ("ip,tcp", "tcp"),
            ("dl_type=0x88cc", "dl_type=0x88cc"),
            ("ip nw_dst=10.0.0.1  tcp", "tcp,nw_dst=10.0.0.1"),
            ("", ""),
        ] {
            let flow = parse(&format!("{text},actions=drop")).unwrap();
            let want = if printed.is_empty() {
                "priority=32768,actions=drop".to_string()
            } else {
                format!("priority=32768,{printed},actions=drop")
            };
            assert_eq!(print(&flow), want, "{text}");
        }
    }

    #[test]
    fn drop_forms() {
        for text in [
            "actions=drop",
            "actions=",
            "actions=DROP",
            "priority=1 actions=",
        ] {
            assert_eq!(parse(text).unwrap().actions, [Action::Drop], "{text}");
        }
        assert_eq!(parse("actions=NORMAL").unwrap().actions, [Action::Normal]);
        assert_eq!(parse("actions=route").unwrap().actions, [Action::Route]);
        assert_eq!(format_actions(&[], &names), "drop");
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err("ip,nw_dst=10.0.0.300/24,actions=drop"),
            "nw_dst=10.0.0.300/24: not an IPv4 address or prefix, at column 4"
        );
        assert_eq!(
            err("tcp,tp_dstt=80,actions=drop"),
            "unknown field \"tp_dstt\" (did you mean \"tp_dst\"?), at column 5"
        );
        assert_eq!(
            err("actions=output:veth9"),
            "output:veth9: no such port, at column 9"
        );
        assert_eq!(
            err("in_port=eth0,actions=drop"),
            "in_port=eth0: no such port, at column 1"
        );
        assert_eq!(
            err("nw_src=10.0.0.1,actions=drop"),
            "nw_src needs ip or arp (add \"ip,\" before it), at column 1"
        );
        assert_eq!(
            err("ip,tp_dst=80,actions=drop"),
            "tp_dst needs a protocol such as tcp or udp (add \"tcp,\" before it), at column 4"
        );
        assert_eq!(
            err("actions=output:1,priority=5"),
            "priority=5: actions= must come last, at column 18"
        );
        assert_eq!(
            err("actions=output:1,tcp"),
            "tcp: actions= must come last, at column 18"
        );
        assert_eq!(
            err("tcp,udp,actions=drop"),
            "udp conflicts with the earlier tcp, at column 5"
        );
        assert_eq!(
            err("actions=drop,output:1"),
            "drop must be the only action, at column 9"
        );
        assert_eq!(
            err("actions=outptu:1"),
            "unknown action \"outptu:1\" (did you mean \"output\"?), at column 9"
        );
        assert_eq!(
            err("tcp"),
            "no actions given (end the flow with actions=..., e.g. actions=drop)"
        );
        assert_eq!(
            err("table=0,actions=drop"),
            "table=0: not supported by xvs, at column 1"
        );
        assert_eq!(
            err("actions=push_vlan:0x8100"),
            "push_vlan:0x8100: not a VLAN id (0-4095); xvs's push_vlan takes the VID of the \
             new tag, whose TPID is always 0x8100, at column 9"
        );
        assert_eq!(
            err("dl_vlan=4096,actions=drop"),
            "dl_vlan=4096: not a VLAN id (0-4095, or 0xffff for no tag), at column 1"
        );
        assert_eq!(
            err("ipv6,nw_dst=10.0.0.1,actions=drop"),
            "nw_dst needs ip or arp (add \"ip,\" before it), at column 6"
        );
        assert_eq!(
            err("icmp_type=8,actions=drop"),
            "icmp_type needs icmp or icmp6 (add \"icmp,\" before it), at column 1"
        );
        assert_eq!(
            err("priority=70000,actions=drop"),
            "priority=70000: not a priority (0-65535), at column 1"
        );
        assert_eq!(
            err("dl_src=02:00:00:00:00,actions=drop"),
            "dl_src=02:00:00:00:00: not a MAC address (or MAC/mask), at column 1"
        );
        assert_eq!(
            err("tcp=1,actions=drop"),
            "tcp=1: tcp takes no value, at column 1"
        );
        assert_eq!(
            err("tcp,actions=output"),
            "output: output needs a port, as output:..., at column 13"
        );
        assert_eq!(
            parse("nw_src=1.2.3.4,ip,actions=drop")
                .unwrap()
                .pattern
                .mask()
                .nw_src,
            0xffff_ffff
        );
        assert_eq!(parse("tcp").unwrap_err().offset(), None);
    }

    #[test]
    fn parsed_rules_match_extracted_keys() {
        // 02:..:01 -> 02:..:02, IPv4 10.0.0.1:1000 -> 10.0.0.2:2000 UDP, 4 bytes of payload.
        static UDP_FRAME: [u8; 46] = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
            0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
            0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, 1, 2, 3, 4, // udp
        ];
        let (key, _) = FlowKey::extract(&UDP_FRAME, 3).unwrap();
        for (text, hit) in [
            ("udp,nw_src=10.0.0.1,tp_dst=2000", true),
            (
                "in_port=veth3,dl_vlan=0xffff,dl_src=02:00:00:00:00:01",
                true,
            ),
            ("ip,nw_dst=10.0.0.0/30,tp_src=1000,udp", true),
            ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", false),
            ("tcp", false),
            ("udp,tp_dst=0x0700/0xff00", true),
            ("dl_vlan=0", false),
            ("", true),
        ] {
            let flow = parse(&format!("{text},actions=normal")).unwrap();
            assert_eq!(flow.pattern.matches(&key), hit, "{text}");
        }
    }

    #[test]
    fn match_for_del_flows() {
        let spec = parse_match("priority=5,in_port=2", &ports).unwrap();
        assert_eq!(spec.priority, Some(5));
        assert_eq!(spec.pattern.value().in_port, 2);
        assert_eq!(parse_match("", &ports).unwrap().pattern, Match::ANY);
        assert_eq!(
            parse_match("tcp,actions=drop", &ports)
                .unwrap_err()
                .to_string(),
            "actions=drop: actions are not allowed here, at column 5"
        );
    }

    #[test]
    fn unnameable_ports_print_as_numbers() {
        let odd = |port: PortId| {
            Some(if port == 1 {
                "7".to_string()
            } else {
                "a,b".to_string()
            })
        };
        assert_eq!(
            format_actions(&[Action::Output(1), Action::Output(2)], &odd),
            "output:1,output:2"
        );
    }

    // Generators of every flow the syntax can express.

    fn opt<T: core::fmt::Debug + Clone>(
        s: impl Strategy<Value = T>,
    ) -> impl Strategy<Value = Option<T>> {
        prop::option::weighted(0.4, s)
    }

    fn mac_mask() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0xffff_ffff_ffffu64),
            Just(0x0100_0000_0000),
            (1u64..1 << 48)
        ]
    }

    fn ipv4_mask() -> impl Strategy<Value = u128> {
        prop_oneof![
            (0u8..=32).prop_map(|len| prefix_mask(len, 32)),
            any::<u32>().prop_map(u128::from)
        ]
    }

    fn ipv6_mask() -> impl Strategy<Value = u128> {
        prop_oneof![
            (0u8..=128).prop_map(|len| prefix_mask(len, 128)),
            any::<u128>()
        ]
    }

    fn tp() -> impl Strategy<Value = (u16, u16)> {
        prop_oneof![
            any::<u16>().prop_map(|v| (v, 0xffff)),
            (any::<u16>(), any::<u16>())
        ]
    }

    /// (dl_type, nw_proto) combinations, with what the L3/L4 fields may be.
    fn matches() -> impl Strategy<Value = Match> {
        let l2 = (
            opt(0u16..6),
            opt(prop_oneof![
                Just((0u16, VLAN_TCI_BITS)),
                (0u16..4096).prop_map(|vid| (VLAN_PRESENT | vid, VLAN_TCI_BITS)),
                (0u16..0x2000, 1u16..0x2000),
            ]),
            opt((0u64..1 << 48, mac_mask())),
            opt((0u64..1 << 48, mac_mask())),
        );
        let l3 = prop_oneof![
            Just((None, None, false)),
            prop::sample::select(vec![0x88ccu16, 0x8847]).prop_map(|t| (Some(t), None, false)),
            opt(any::<u8>()).prop_map(|p| (Some(EtherType::IPV4), p, false)),
            opt(any::<u8>()).prop_map(|p| (Some(EtherType::IPV6), p, true)),
            opt(any::<u8>()).prop_map(|p| (Some(EtherType::ARP), p, false)),
            prop::sample::select(vec![1u8, 6, 17, 58]).prop_map(|p| (
                Some(EtherType::IPV6),
                Some(p),
                true
            )),
            prop::sample::select(vec![1u8, 6, 17]).prop_map(|p| (
                Some(EtherType::IPV4),
                Some(p),
                false
            )),
        ];
        let addrs = (
            opt((any::<u128>(), ipv6_mask())),
            opt((any::<u128>(), ipv4_mask())),
            opt((any::<u128>(), ipv6_mask())),
            opt((any::<u128>(), ipv4_mask())),
            opt(tp()),
            opt(tp()),
        );
        (l2, l3, addrs).prop_map(
            |((in_port, vlan, dl_src, dl_dst), (dl_type, nw_proto, v6), addrs)| {
                let mut value = FlowKey::default();
                let mut mask = FlowKey::default();
                if let Some(p) = in_port {
                    (value.in_port, mask.in_port) = (p, 0xffff);
                }
                if let Some((v, m)) = vlan {
                    (value.vlan, mask.vlan) = (v, m);
                }
                if let Some((v, m)) = dl_src {
                    (value.dl_src, mask.dl_src) = (v, m);
                }
                if let Some((v, m)) = dl_dst {
                    (value.dl_dst, mask.dl_dst) = (v, m);
                }
                if let Some(t) = dl_type {
                    (value.dl_type, mask.dl_type) = (t, 0xffff);
                }
                let (src6, src4, dst6, dst4, tp_src, tp_dst) = addrs;
                let has_addrs = matches!(
                    dl_type,
                    Some(EtherType::IPV4 | EtherType::IPV6 | EtherType::ARP)
                );
                if has_addrs {
                    let (src, dst) = if v6 { (src6, dst6) } else { (src4, dst4) };
                    let width = if v6 { u128::MAX } else { u128::from(u32::MAX) };
                    if let Some((v, m)) = src {
                        (value.nw_src, mask.nw_src) = (v & width, m & width);
                    }
                    if let Some((v, m)) = dst {
                        (value.nw_dst, mask.nw_dst) = (v & width, m & width);
                    }
                }
                if let Some(p) = nw_proto.filter(|_| has_addrs) {
                    (value.nw_proto, mask.nw_proto) = (p, 0xff);
                    if dl_type != Some(EtherType::ARP) {
                        if let Some((v, m)) = tp_src {
                            (value.tp_src, mask.tp_src) = (v, m);
                        }
                        if let Some((v, m)) = tp_dst {
                            (value.tp_dst, mask.tp_dst) = (v, m);
                        }
                    }
                }
                Match::new(value, mask)
            },
        )
    }

    fn actions() -> impl Strategy<Value = Vec<Action>> {
        let mac = any::<[u8; 6]>().prop_map(EthernetAddress);
        let action = prop_oneof![
            any::<u16>().prop_map(Action::Output),
            (1u16..=4).prop_map(Action::Output),
            Just(Action::Flood),
            Just(Action::Normal),
            mac.clone().prop_map(Action::SetDlSrc),
            mac.prop_map(Action::SetDlDst),
            (0u16..4096).prop_map(Action::SetVlanVid),
            Just(Action::StripVlan),
            (0u16..4096).prop_map(Action::PushVlan),
            Just(Action::DecTtl),
            Just(Action::Route),
        ];
        prop_oneof![
            1 => Just(vec![Action::Drop]),
            6 => prop::collection::vec(action, 1..6),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn parse_of_print_is_identity(
            priority in any::<u16>(),
            pattern in matches(),
            actions in actions(),
        ) {
            let flow = FlowSpec { priority, pattern, actions };
            let text = print(&flow);
            let back = parse(&text);
            prop_assert_eq!(back.as_ref(), Ok(&flow), "{}", text);
            // Numbers only, too.
            let numeric = flow.to_string();
            prop_assert_eq!(parse(&numeric), Ok(flow), "{}", numeric);
        }

        #[test]
        fn parsing_never_panics(text in "[a-z_0-9=,:./ x]{0,60}") {
            let _ = parse(&text);
            let _ = parse_match(&text, &ports);
        }

        #[test]
        fn parsing_odd_bytes_never_panics(text in "\\PC{0,40}") {
            let _ = parse(&text);
            let _ = parse(&format!("actions={text}"));
        }
    }
}
