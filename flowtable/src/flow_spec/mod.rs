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
//! | field | value | stored in [`FlowKey`](crate::key::FlowKey) |
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
//! | `nw_ttl` | 0–255 (needs `ip` or `ipv6`) | `nw_ttl` |
//! | `nw_tos`, `ip_dscp`, `nw_ecn`/`ip_ecn` | TOS byte (ECN bits clear), DSCP 0–63, ECN 0–3 | `nw_tos` |
//! | `tcp_flags` | `+syn-ack` (fin syn rst psh ack urg ece cwr ns) or `value/mask` (needs `tcp`) | `tcp_flags` |
//! | `ipv6_label` | 20 bits, optional `/mask` (needs `ipv6`) | `ipv6_label` |
//! | `ct_state` | `+trk+est-new` (new est rel rpl inv trk) or `value/mask` | `ct_state` |
//! | `ct_zone`, `ct_mark` | 0–65535; 32 bits, optional `/mask` | `ct_zone`, `ct_mark` |
//! | `table` | 0–254, default 0 | (the rule's table) |
//! | `cookie` | 64 bits (`/mask` only to select flows in del-flows and dump-flows) | ([`FlowSpec::cookie`]) |
//! | `idle_timeout`, `hard_timeout`, `send_flow_rem` | seconds; a flag | ([`FlowSpec`]) |
//!
//! Shorthands: `ip`, `ipv6`, `arp`, `tcp`, `udp`, `icmp`, `tcp6`, `udp6`, `icmp6`. Fields may
//! come in any order; prerequisites are checked once all are read. Host bits outside a mask
//! are ignored (`nw_dst=10.0.0.1/24` is `10.0.0.0/24`), as in OVS.
//!
//! Actions: `output:PORT` (or a bare port: `actions=2`), `in_port` (`output:in_port`), `flood`,
//! `normal`, `drop` (alone), `resubmit:PORT`, `resubmit(PORT,TABLE)`, `goto_table:N` (a later
//! table), `ct(commit,zone=N,table=N,exec(set_field:V[/M]->ct_mark))`, `mod_dl_src:MAC`,
//! `mod_dl_dst:MAC`, `mod_vlan_vid:VID`, `strip_vlan`, `push_vlan:VID` (xvs's simplification:
//! push an 802.1Q tag with that VID), `mod_nw_src:IP`, `mod_nw_dst:IP`, `mod_tp_src:PORT`,
//! `mod_tp_dst:PORT`, `mod_nw_tos:TOS`, `mod_nw_ecn:ECN`, `mod_nw_ttl:TTL`,
//! `set_field:VALUE->FIELD` (eth_src eth_dst vlan_vid ip_src ip_dst ipv6_src ipv6_dst tp_src
//! tp_dst ip_dscp nw_ecn nw_ttl), `load:VALUE->NXM_OF_IP_DST[]` and the other NXM names of
//! those fields (whole fields only), `dec_ttl`, `route`. Action names are case-insensitive;
//! commas inside parentheses belong to the action. `actions=` with nothing after it is
//! refused: a rule that drops what it matches says `actions=drop`, and parses to
//! `[Action::Drop]`.
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

mod actions;
mod fields;
mod format;
mod lex;
mod suggest;
#[cfg(test)]
mod tests;

use self::actions::parse_actions;
use self::fields::parse_fields;
pub use self::format::{format_actions, format_flow, format_match, format_rule};
use self::lex::{Token, split};
use self::suggest::did_you_mean;
use crate::port::PortId;
use crate::rule::{Action, Match, Rule};

/// A flow as written for `add-flow`: everything of a [`Rule`] but its id, and the
/// attributes the control plane keeps (cookie, timeouts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// The table (default 0).
    pub table: u8,
    /// The priority (default [`Rule::DEFAULT_PRIORITY`]).
    pub priority: u16,
    /// An opaque number the installer chooses, to find its flows again (default 0).
    pub cookie: u64,
    /// Remove the flow after this many seconds without a packet (0: never).
    pub idle_timeout: u16,
    /// Remove the flow this many seconds after it was added (0: never).
    pub hard_timeout: u16,
    /// Log the flow's removal when a timeout removes it.
    pub send_flow_rem: bool,
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
            table: self.table,
            priority: self.priority,
            pattern: self.pattern,
            actions: self.actions,
        }
    }
}

impl From<&Rule> for FlowSpec {
    fn from(rule: &Rule) -> FlowSpec {
        FlowSpec {
            table: rule.table,
            priority: rule.priority,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            send_flow_rem: false,
            pattern: rule.pattern,
            actions: rule.actions.clone(),
        }
    }
}

/// A match as written for `del-flows` and `dump-flows` (no actions; the priority only counts
/// with `--strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchSpec {
    /// The priority, if one was given.
    pub priority: Option<u16>,
    /// Only the flows of this table (every table when `None`).
    pub table: Option<u8>,
    /// Only the flows whose cookie, masked, is the value: (value, mask).
    pub cookie: Option<(u64, u64)>,
    /// The match.
    pub pattern: Match,
}

impl MatchSpec {
    /// Whether a flow in `table` with `cookie` is one this spec's table and cookie select.
    pub fn selects(&self, table: u8, cookie: u64) -> bool {
        self.table.is_none_or(|t| t == table)
            && self
                .cookie
                .is_none_or(|(value, mask)| cookie & mask == value & mask)
    }
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
    /// `actions=` with no action after it (a drop is written `actions=drop`).
    #[error(
        "actions= is empty: write actions=drop to drop what the flow matches, at column {}",
        .offset + 1
    )]
    EmptyActions {
        /// Where the action list would start.
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
            | FlowSpecError::EmptyActions { offset }
            | FlowSpecError::ActionsNotAllowed { offset, .. } => Some(*offset),
            FlowSpecError::MissingActions => None,
        }
    }
}

fn invalid(token: Token<'_>, reason: impl Into<String>) -> FlowSpecError {
    FlowSpecError::Invalid {
        offset: token.offset,
        token: token.text.to_string(),
        reason: reason.into(),
    }
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
    let fields = parse_fields(&tokens, ports)?;
    let Some((actions_offset, actions_text)) = actions else {
        return Err(FlowSpecError::MissingActions);
    };
    let cookie = match fields.cookie {
        Some((value, u64::MAX)) => value,
        Some(_) => {
            let offset = fields.cookie_offset;
            return Err(FlowSpecError::Invalid {
                offset,
                token: text[offset..]
                    .split(lex::is_separator)
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                reason: "a flow's cookie takes no mask (masks select flows in del-flows and \
                         dump-flows)"
                    .to_string(),
            });
        }
        None => 0,
    };
    let table = fields.table.unwrap_or(0);
    Ok(FlowSpec {
        table,
        priority: fields.priority.unwrap_or(Rule::DEFAULT_PRIORITY),
        cookie,
        idle_timeout: fields.idle_timeout.unwrap_or(0),
        hard_timeout: fields.hard_timeout.unwrap_or(0),
        send_flow_rem: fields.send_flow_rem,
        pattern: fields.pattern,
        actions: parse_actions(actions_text, actions_offset, table, ports)?,
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
    let fields = parse_fields(&tokens, ports)?;
    if fields.idle_timeout.is_some() || fields.hard_timeout.is_some() || fields.send_flow_rem {
        return Err(FlowSpecError::Invalid {
            offset: 0,
            token: text.trim().to_string(),
            reason: "timeouts and send_flow_rem belong to add-flow, not to a match".to_string(),
        });
    }
    Ok(MatchSpec {
        priority: fields.priority,
        table: fields.table,
        cookie: fields.cookie,
        pattern: fields.pattern,
    })
}
