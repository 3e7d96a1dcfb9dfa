//! The match fields of the syntax: their names, the shorthands, what each writes into the
//! [`FlowKey`] of a [`Match`], and the checks for conflicts and missing prerequisites.

use super::lex::{
    Token, parse_ipv4_prefix, parse_ipv6_prefix, parse_mac_, parse_uint, parse_uint_, resolve_port,
};
use super::suggest::closest;
use super::{FlowSpecError, invalid};
use crate::key::{FlowKey, VLAN_PRESENT};
use crate::port::PortId;
use crate::rule::Match;
use crate::wire::EtherType;
use crate::wire::ipv4::Protocol;

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
    NwTtl,
    /// The DSCP bits of `nw_tos` (0xfc).
    Dscp,
    /// The ECN bits of `nw_tos` (0x03).
    Ecn,
    TcpFlags,
    Ipv6Label,
    CtState,
    CtZone,
    CtMark,
}

const SLOTS: usize = 18;

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
            Slot::NwTtl => key.nw_ttl.into(),
            Slot::Dscp => (key.nw_tos & 0xfc).into(),
            Slot::Ecn => (key.nw_tos & 0x03).into(),
            Slot::TcpFlags => key.tcp_flags.into(),
            Slot::Ipv6Label => key.ipv6_label.into(),
            Slot::CtState => key.ct_state.into(),
            Slot::CtZone => key.ct_zone.into(),
            Slot::CtMark => key.ct_mark.into(),
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
            Slot::NwTtl => key.nw_ttl = value as u8,
            Slot::Dscp => key.nw_tos = (key.nw_tos & 0x03) | (value as u8 & 0xfc),
            Slot::Ecn => key.nw_tos = (key.nw_tos & 0xfc) | (value as u8 & 0x03),
            Slot::TcpFlags => key.tcp_flags = value as u16,
            Slot::Ipv6Label => key.ipv6_label = value as u32,
            Slot::CtState => key.ct_state = value as u8,
            Slot::CtZone => key.ct_zone = value as u16,
            Slot::CtMark => key.ct_mark = value as u32,
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
    Table,
    Cookie,
    IdleTimeout,
    HardTimeout,
    SendFlowRem,
    NwTtl,
    NwTos,
    IpDscp,
    NwEcn,
    TcpFlags,
    Ipv6Label,
    CtState,
    CtZone,
    CtMark,
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
    ("table", Field::Table),
    ("cookie", Field::Cookie),
    ("idle_timeout", Field::IdleTimeout),
    ("hard_timeout", Field::HardTimeout),
    ("send_flow_rem", Field::SendFlowRem),
    ("nw_ttl", Field::NwTtl),
    ("nw_tos", Field::NwTos),
    ("ip_dscp", Field::IpDscp),
    ("nw_ecn", Field::NwEcn),
    ("ip_ecn", Field::NwEcn),
    ("tcp_flags", Field::TcpFlags),
    ("ipv6_label", Field::Ipv6Label),
    ("ct_state", Field::CtState),
    ("ct_zone", Field::CtZone),
    ("ct_mark", Field::CtMark),
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
    "importance",
    "out_port",
    "out_group",
    "dl_vlan_pcp",
    "vlan_pcp",
    "nw_frag",
    "ip_frag",
    "arp_sha",
    "arp_tha",
    "nd_target",
    "nd_sll",
    "nd_tll",
    "tun_id",
    "metadata",
    "ct_label",
    "ct_nw_src",
    "ct_nw_dst",
    "ct_tp_src",
    "ct_tp_dst",
    "reg0",
    "reg1",
    "sctp",
    "sctp6",
    "rarp",
    "mpls",
];

pub(super) fn field_names() -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .map(|(name, _)| *name)
        .chain(SHORTHANDS.iter().map(|(name, ..)| *name))
}

/// What the fields before `actions=` say: the match and the flow's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Fields {
    pub(super) priority: Option<u16>,
    pub(super) table: Option<u8>,
    /// (value, mask).
    pub(super) cookie: Option<(u64, u64)>,
    /// Where `cookie=` was, to refuse a mask where none is allowed.
    pub(super) cookie_offset: usize,
    pub(super) idle_timeout: Option<u16>,
    pub(super) hard_timeout: Option<u16>,
    pub(super) send_flow_rem: bool,
    pub(super) pattern: Match,
}

/// The state of a match being parsed.
struct Builder<'a> {
    value: FlowKey,
    mask: FlowKey,
    /// The token that set each slot, and the field name it used.
    set_by: [Option<(Token<'a>, &'static str)>; SLOTS],
    fields: Fields,
}

impl<'a> Builder<'a> {
    fn new() -> Builder<'a> {
        Builder {
            value: FlowKey::default(),
            mask: FlowKey::default(),
            set_by: [None; SLOTS],
            fields: Fields::default(),
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
                "nw_ttl" | "nw_tos" | "ip_dscp" | "nw_ecn" | "ip_ecn" => {
                    (is_ip, "ip or ipv6", "ip")
                }
                "tcp_flags" => (
                    is_ip && nw_proto == Some(Protocol::TCP),
                    "tcp or tcp6",
                    "tcp",
                ),
                "ipv6_label" => (dl_type == Some(EtherType::IPV6), "ipv6", "ipv6"),
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

pub(super) fn parse_fields<'a>(
    tokens: &[Token<'a>],
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Fields, FlowSpecError> {
    let mut b = Builder::new();
    for &token in tokens {
        parse_field(&mut b, token, ports)?;
    }
    b.check_prerequisites()?;
    Ok(Fields {
        pattern: Match::new(b.value, b.mask),
        ..b.fields
    })
}

/// Sets an attribute given once (or again with the same value).
fn once<T: PartialEq + Copy>(
    slot: &mut Option<T>,
    value: T,
    token: Token<'_>,
    name: &str,
) -> Result<(), FlowSpecError> {
    if slot.is_some_and(|earlier| earlier != value) {
        return Err(invalid(token, format!("{name} given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// The TCP flags by name, as `tcp_flags=+syn-ack` writes them.
pub(super) const TCP_FLAG_NAMES: &[(&str, u16)] = &[
    ("fin", 0x001),
    ("syn", 0x002),
    ("rst", 0x004),
    ("psh", 0x008),
    ("ack", 0x010),
    ("urg", 0x020),
    ("ece", 0x040),
    ("cwr", 0x080),
    ("ns", 0x100),
];

/// The conntrack state flags by name, as `ct_state=+trk+est-new` writes them.
pub(super) const CT_STATE_NAMES: &[(&str, u8)] = &[
    ("new", 0x01),
    ("est", 0x02),
    ("rel", 0x04),
    ("rpl", 0x08),
    ("inv", 0x10),
    ("trk", 0x20),
];

/// `+a-b+c` over `names` → (value, mask); `None` if a name is unknown or the text is not
/// of that form.
fn parse_flag_list(s: &str, names: &[(&str, u16)]) -> Option<(u16, u16)> {
    if !s.starts_with(['+', '-']) {
        return None;
    }
    let (mut value, mut mask) = (0u16, 0u16);
    let mut rest = s;
    while let Some(sign) = rest.chars().next() {
        let body = &rest[1..];
        let end = body.find(['+', '-']).unwrap_or(body.len());
        let name = &body[..end];
        let &(_, bit) = names.iter().find(|(n, _)| *n == name)?;
        if mask & bit != 0 && (value & bit != 0) != (sign == '+') {
            return None;
        }
        mask |= bit;
        if sign == '+' {
            value |= bit;
        }
        rest = &body[end..];
    }
    Some((value, mask))
}

/// Flags as `+a-b` or as `value/mask` numbers within `all`.
fn parse_flags(s: &str, names: &[(&str, u16)], all: u16) -> Option<(u128, u128)> {
    if let Some((v, m)) = parse_flag_list(s, names) {
        return Some((v.into(), m.into()));
    }
    parse_uint_(s, all.into())
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
    if field == Field::SendFlowRem {
        if value.is_some() {
            return Err(invalid(token, "send_flow_rem takes no value"));
        }
        b.fields.send_flow_rem = true;
        return Ok(());
    }
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Err(invalid(token, format!("{field_name} needs a value")));
    };
    match field {
        Field::Priority => {
            let p = parse_uint(value)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| invalid(token, "not a priority (0-65535)"))?;
            once(&mut b.fields.priority, p, token, "priority")?;
        }
        Field::Table => {
            let t = parse_uint(value)
                .filter(|&t| t <= 254)
                .ok_or_else(|| invalid(token, "not a table (0-254)"))?;
            once(&mut b.fields.table, t as u8, token, "table")?;
        }
        Field::Cookie => {
            let (v, m) = parse_uint_(value, u64::MAX.into())
                .ok_or_else(|| invalid(token, "not a cookie (a 64-bit number, optional /mask)"))?;
            once(&mut b.fields.cookie, (v as u64, m as u64), token, "cookie")?;
            b.fields.cookie_offset = token.offset;
        }
        Field::IdleTimeout | Field::HardTimeout => {
            let t = parse_uint(value)
                .and_then(|t| u16::try_from(t).ok())
                .ok_or_else(|| invalid(token, "not a timeout in seconds (0-65535)"))?;
            let slot = if field == Field::IdleTimeout {
                &mut b.fields.idle_timeout
            } else {
                &mut b.fields.hard_timeout
            };
            once(slot, t, token, field_name)?;
        }
        // A flag without a value: handled above.
        Field::SendFlowRem => {}
        Field::NwTtl => {
            let v = parse_uint(value)
                .filter(|&v| v <= 0xff)
                .ok_or_else(|| invalid(token, "not a TTL (0-255)"))?;
            b.set(Slot::NwTtl, v, 0xff, token, field_name)?;
        }
        Field::NwTos => {
            let v = parse_uint(value)
                .filter(|&v| v <= 0xff && v & 0x03 == 0)
                .ok_or_else(|| {
                    invalid(
                        token,
                        "not a TOS byte with the ECN bits clear (0-252, a multiple of 4)",
                    )
                })?;
            b.set(Slot::Dscp, v, 0xfc, token, field_name)?;
        }
        Field::IpDscp => {
            let v = parse_uint(value)
                .filter(|&v| v <= 63)
                .ok_or_else(|| invalid(token, "not a DSCP (0-63)"))?;
            b.set(Slot::Dscp, v << 2, 0xfc, token, "nw_tos")?;
        }
        Field::NwEcn => {
            let v = parse_uint(value)
                .filter(|&v| v <= 3)
                .ok_or_else(|| invalid(token, "not an ECN value (0-3)"))?;
            b.set(Slot::Ecn, v, 0x03, token, "nw_ecn")?;
        }
        Field::TcpFlags => {
            let (v, m) = parse_flags(value, TCP_FLAG_NAMES, 0x0fff).ok_or_else(|| {
                invalid(
                    token,
                    "not TCP flags (+syn-ack style over fin, syn, rst, psh, ack, urg, ece, cwr, \
                     ns; or value/mask within 0xfff)",
                )
            })?;
            b.set(Slot::TcpFlags, v, m, token, field_name)?;
        }
        Field::Ipv6Label => {
            let (v, m) = parse_uint_(value, 0xf_ffff)
                .ok_or_else(|| invalid(token, "not a flow label (20 bits, optional /mask)"))?;
            b.set(Slot::Ipv6Label, v, m, token, field_name)?;
        }
        Field::CtState => {
            let names: Vec<(&str, u16)> = CT_STATE_NAMES
                .iter()
                .map(|&(n, b)| (n, u16::from(b)))
                .collect();
            let (v, m) = parse_flags(value, &names, 0x3f).ok_or_else(|| {
                invalid(
                    token,
                    "not a conntrack state (+trk+est-new style over new, est, rel, rpl, inv, \
                     trk; or value/mask within 0x3f)",
                )
            })?;
            b.set(Slot::CtState, v, m, token, field_name)?;
        }
        Field::CtZone => {
            let v = parse_uint(value)
                .filter(|&v| v <= 0xffff)
                .ok_or_else(|| invalid(token, "not a zone (0-65535)"))?;
            b.set(Slot::CtZone, v, 0xffff, token, field_name)?;
        }
        Field::CtMark => {
            let (v, m) = parse_uint_(value, u32::MAX.into())
                .ok_or_else(|| invalid(token, "not a mark (32 bits, optional /mask)"))?;
            b.set(Slot::CtMark, v, m, token, field_name)?;
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
pub(super) const VLAN_TCI_BITS: u16 = VLAN_PRESENT | 0x0fff;
