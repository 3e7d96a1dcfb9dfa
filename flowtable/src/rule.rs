//! OpenFlow-style rules: a masked match over [`FlowKey`], a priority, and actions.
//!
//! Rules are what the control plane installs (`ovs-ofctl add-flow` syntax lives in
//! [`crate::flow_spec`]) and what the [`crate::classifier::Classifier`] looks up. Their
//! [`Action`]s are OpenFlow-level: `normal` and `route` still have to be resolved by the
//! pipeline into the concrete [`crate::action::Step`]s of a decision.

use core::net::IpAddr;

use crate::key::FlowKey;
use crate::port::PortId;
use crate::wire::EthernetAddress;

/// What a rule matches: the packets whose key, masked, equals the value.
///
/// A bit set in the mask must match; a clear bit is a wildcard. A field whose mask is zero is
/// absent from the rule. The value never has bits outside the mask ([`Match::new`] clears
/// them), so two matches that accept the same packets compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Match {
    value: FlowKey,
    mask: FlowKey,
}

impl Match {
    /// The match that accepts every packet (all fields wildcarded).
    pub const ANY: Match = Match {
        value: FlowKey::ZERO,
        mask: FlowKey::ZERO,
    };

    /// The match of the packets whose key masked by `mask` equals `value` masked by `mask`.
    /// Bits of `value` outside `mask` are cleared.
    pub fn new(value: FlowKey, mask: FlowKey) -> Match {
        Match {
            value: value.masked(&mask),
            mask,
        }
    }

    /// The match of exactly this key's packet fields: every field but the TTL and the
    /// conntrack fields (which are not the packet's).
    pub fn exact(key: &FlowKey) -> Match {
        let full = FlowKey {
            nw_ttl: 0,
            ct_state: 0,
            ct_zone: 0,
            ct_mark: 0,
            ..FlowKey::ALL_BITS
        };
        Match::new(*key, full)
    }

    /// The values of the matched bits (zero elsewhere).
    pub fn value(&self) -> &FlowKey {
        &self.value
    }

    /// The bits that must match.
    pub fn mask(&self) -> &FlowKey {
        &self.mask
    }

    /// Whether the packet of flow `key` matches.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        key.masked(&self.mask) == self.value
    }

    /// Whether every field this match constrains is constrained by `other` at least as
    /// narrowly and to the same value, i.e. every packet `other` matches, `self` matches too.
    ///
    /// This is how `ovs-ofctl del-flows` without `--strict` selects rules: `self` is the
    /// match given on the command line, `other` each installed rule's match. [`Match::ANY`]
    /// covers everything.
    pub fn covers(&self, other: &Match) -> bool {
        // Our mask bits must be a subset of theirs, and their value agree with ours there.
        self.mask.masked(&other.mask) == self.mask && other.value.masked(&self.mask) == self.value
    }

    /// Whether no field is constrained.
    pub fn is_any(&self) -> bool {
        self.mask == FlowKey::default()
    }
}

/// An OpenFlow-level action, in the order the rule lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send out of this port (`output:PORT`).
    Output(PortId),
    /// Send out of every port except the ingress port (`flood`).
    Flood,
    /// Hand to the L2 learning switch (`normal`).
    Normal,
    /// Drop (`drop`); only ever alone. A rule with no actions drops too.
    Drop,
    /// Rewrite the source MAC (`mod_dl_src:MAC`).
    SetDlSrc(EthernetAddress),
    /// Rewrite the destination MAC (`mod_dl_dst:MAC`).
    SetDlDst(EthernetAddress),
    /// Set the VID of the tag, adding a tag if there is none (`mod_vlan_vid:VID`).
    SetVlanVid(u16),
    /// Remove the outer tag if there is one (`strip_vlan`).
    StripVlan,
    /// Add an 802.1Q tag (TPID 0x8100) with this VID in front of any existing one
    /// (`push_vlan:VID`; xvs's simplification of OpenFlow's `push_vlan` + `set_field`).
    PushVlan(u16),
    /// Decrement the IP TTL or hop limit (`dec_ttl`).
    DecTtl,
    /// Hand to the L3 pipeline: route by destination IP (`route`).
    Route,
    /// Send back out of the ingress port (`output:in_port`, or `in_port`).
    OutputInPort,
    /// Look the packet up again (`resubmit:PORT`, `resubmit(PORT,TABLE)`): in `table` (the
    /// current table when `None`), as if it came in on `port` (its own when `None`), run the
    /// actions of the rule found there, then go on with the rest of this rule's actions.
    Resubmit {
        /// The ingress port to look up with.
        port: Option<PortId>,
        /// The table to look in.
        table: Option<u8>,
    },
    /// After this rule's other actions, continue in this table (`goto_table:N`, an
    /// OpenFlow instruction; the table must come after the rule's own).
    GotoTable(u8),
    /// Connection tracking (`ct(...)`).
    Ct(CtAction),
    /// Rewrite the IPv4 or IPv6 source (`mod_nw_src:IP`, `set_field:IP->nw_src`/`ipv6_src`).
    SetNwSrc(IpAddr),
    /// Rewrite the destination address.
    SetNwDst(IpAddr),
    /// Rewrite the TCP/UDP source port (`mod_tp_src:PORT`, `set_field:PORT->tp_src`).
    SetTpSrc(u16),
    /// Rewrite the TCP/UDP destination port.
    SetTpDst(u16),
    /// Set the DSCP, 0-63 (`set_field:V->ip_dscp`; `mod_nw_tos:TOS` sets it from a TOS byte).
    SetDscp(u8),
    /// Set the ECN bits, 0-3 (`set_field:V->nw_ecn`, `mod_nw_ecn:V`).
    SetEcn(u8),
    /// Set the TTL or hop limit (`set_field:V->nw_ttl`, `mod_nw_ttl:V`).
    SetTtl(u8),
}

/// What a `ct` action does: `ct(commit,zone=N,table=N,exec(set_field:V/M->ct_mark))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CtAction {
    /// Remember the connection (`commit`); without it a new connection is only looked at.
    pub commit: bool,
    /// The zone to track in (`zone=N`, default 0).
    pub zone: u16,
    /// Continue in this table with the `ct_*` fields set (`table=N`); without it the rest of
    /// the actions run with the fields as they were, as in OVS.
    pub table: Option<u8>,
    /// Set the connection's mark, (value, mask), with `commit` only
    /// (`exec(set_field:V[/M]->ct_mark)`).
    pub mark: Option<(u32, u32)>,
}

/// A flow rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Chosen by whoever installs the rule; unique within a classifier. Breaks ties between
    /// rules of equal priority (the lowest id wins) and names the rule in decisions and
    /// counters.
    pub id: u32,
    /// The table the rule is in (0-254); a packet starts in table 0.
    pub table: u8,
    /// Higher wins.
    pub priority: u16,
    /// The packets the rule applies to.
    pub pattern: Match,
    /// What to do with them, in order. Empty means drop.
    pub actions: Vec<Action>,
}

impl Rule {
    /// The default priority of OpenFlow rules (`ovs-ofctl` uses it when none is given).
    pub const DEFAULT_PRIORITY: u16 = 32768;

    /// The highest table number (OpenFlow's 255 means "all tables" in requests).
    pub const MAX_TABLE: u8 = 254;

    /// Whether this rule is selected by a strict match (`ovs-ofctl --strict`): the same table,
    /// match and priority.
    pub fn is_strictly(&self, table: u8, pattern: &Match, priority: u16) -> bool {
        self.table == table && self.priority == priority && self.pattern == *pattern
    }

    /// Whether this rule beats `other` for a packet both match: higher priority, then lower
    /// id.
    #[inline]
    pub fn beats(&self, other: &Rule) -> bool {
        (self.priority, core::cmp::Reverse(self.id))
            > (other.priority, core::cmp::Reverse(other.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EtherType;

    fn tcp_dst(port: u16) -> Match {
        Match::new(
            FlowKey {
                dl_type: EtherType::IPV4,
                nw_proto: 6,
                tp_dst: port,
                ..FlowKey::default()
            },
            FlowKey {
                dl_type: 0xffff,
                nw_proto: 0xff,
                tp_dst: 0xffff,
                ..FlowKey::default()
            },
        )
    }

    #[test]
    fn new_clears_bits_outside_the_mask() {
        let m = Match::new(
            FlowKey {
                nw_dst: 0x0a00_0001,
                nw_ttl: 64,
                tp_src: 9,
                ..FlowKey::default()
            },
            FlowKey {
                nw_dst: 0xffff_ff00,
                nw_ttl: 0xff,
                ..FlowKey::default()
            },
        );
        assert_eq!(m.value().nw_dst, 0x0a00_0000);
        assert_eq!(
            (m.value().tp_src, m.value().nw_ttl, m.mask().nw_ttl),
            (0, 64, 0xff)
        );
    }

    #[test]
    fn matches_masked_fields_only() {
        let m = tcp_dst(80);
        let key = FlowKey {
            in_port: 4,
            dl_type: EtherType::IPV4,
            nw_proto: 6,
            tp_src: 1234,
            tp_dst: 80,
            ..FlowKey::default()
        };
        assert!(m.matches(&key));
        assert!(!m.matches(&FlowKey { tp_dst: 81, ..key }));
        assert!(!m.matches(&FlowKey {
            nw_proto: 17,
            ..key
        }));
        assert!(Match::ANY.matches(&key));
        assert!(Match::exact(&key).matches(&FlowKey { nw_ttl: 3, ..key }));
    }

    #[test]
    fn covers_is_non_strict_selection() {
        let tcp = Match::new(
            FlowKey {
                dl_type: EtherType::IPV4,
                nw_proto: 6,
                ..FlowKey::default()
            },
            FlowKey {
                dl_type: 0xffff,
                nw_proto: 0xff,
                ..FlowKey::default()
            },
        );
        assert!(Match::ANY.covers(&tcp));
        assert!(tcp.covers(&tcp_dst(80)));
        assert!(!tcp_dst(80).covers(&tcp));
        assert!(!tcp_dst(80).covers(&tcp_dst(443)));
        assert!(tcp.covers(&tcp));
        assert!(!tcp.covers(&Match::ANY));
        // A /16 covers a /24 inside it but not one outside.
        let net = |addr: u128, mask: u128| {
            Match::new(
                FlowKey {
                    nw_dst: addr,
                    ..FlowKey::default()
                },
                FlowKey {
                    nw_dst: mask,
                    ..FlowKey::default()
                },
            )
        };
        assert!(net(0x0a01_0000, 0xffff_0000).covers(&net(0x0a01_0200, 0xffff_ff00)));
        assert!(!net(0x0a01_0000, 0xffff_0000).covers(&net(0x0a02_0200, 0xffff_ff00)));
    }

    #[test]
    fn priority_then_lowest_id_wins() {
        let rule = |id, priority| Rule {
            id,
            table: 0,
            priority,
            pattern: Match::ANY,
            actions: vec![],
        };
        assert!(rule(9, 10).beats(&rule(1, 5)));
        assert!(rule(1, 10).beats(&rule(2, 10)));
        assert!(!rule(2, 10).beats(&rule(2, 10)));
        assert!(rule(1, 10).is_strictly(0, &Match::ANY, 10));
        assert!(!rule(1, 10).is_strictly(0, &Match::ANY, 11));
    }
}
