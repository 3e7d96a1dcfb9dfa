//! Printing rules back in the syntax, canonically: the text parses back to the same rule.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::FlowSpec;
use super::fields::{CT_STATE_NAMES, TCP_FLAG_NAMES, VLAN_TCI_BITS};
use super::lex::is_separator;
use crate::key::VLAN_PRESENT;
use crate::port::PortId;
use crate::rule::{Action, Match};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress};

/// Prints with port numbers; use [`format_flow`] for names.
impl fmt::Display for FlowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rule(self, &|_| None))
    }
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

/// Prints a whole flow: `table=N,cookie=0x..,idle_timeout=..,hard_timeout=..,send_flow_rem,`
/// (each only when not the default) then what [`format_flow`] prints. Parsing the text gives
/// back the same spec.
pub fn format_rule(spec: &FlowSpec, names: &dyn Fn(PortId) -> Option<String>) -> String {
    let mut out = String::new();
    if spec.table != 0 {
        out.push_str(&format!("table={},", spec.table));
    }
    if spec.cookie != 0 {
        out.push_str(&format!("cookie={:#x},", spec.cookie));
    }
    if spec.idle_timeout != 0 {
        out.push_str(&format!("idle_timeout={},", spec.idle_timeout));
    }
    if spec.hard_timeout != 0 {
        out.push_str(&format!("hard_timeout={},", spec.hard_timeout));
    }
    if spec.send_flow_rem {
        out.push_str("send_flow_rem,");
    }
    out.push_str(&format_flow(
        spec.priority,
        &spec.pattern,
        &spec.actions,
        names,
    ));
    out
}

/// `+a-b` for the bits of `mask` over `names`, if every bit of the mask has a name.
fn flag_list(value: u16, mask: u16, names: &[(&str, u16)]) -> Option<String> {
    let named = names.iter().fold(0, |acc, (_, b)| acc | b);
    if mask & !named != 0 {
        return None;
    }
    let mut out = String::new();
    for &(name, bit) in names {
        if mask & bit != 0 {
            out.push(if value & bit != 0 { '+' } else { '-' });
            out.push_str(name);
        }
    }
    Some(out)
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
    if mask.nw_ttl != 0 {
        parts.push(format!("nw_ttl={}", value.nw_ttl));
    }
    if mask.nw_tos & 0xfc != 0 {
        parts.push(format!("nw_tos={}", value.nw_tos & 0xfc));
    }
    if mask.nw_tos & 0x03 != 0 {
        parts.push(format!("nw_ecn={}", value.nw_tos & 0x03));
    }
    if mask.tcp_flags != 0 {
        match flag_list(value.tcp_flags, mask.tcp_flags, TCP_FLAG_NAMES) {
            Some(list) => parts.push(format!("tcp_flags={list}")),
            None => parts.push(format!(
                "tcp_flags=0x{:03x}/0x{:03x}",
                value.tcp_flags, mask.tcp_flags
            )),
        }
    }
    match mask.ipv6_label {
        0 => {}
        0xf_ffff => parts.push(format!("ipv6_label=0x{:05x}", value.ipv6_label)),
        m => parts.push(format!("ipv6_label=0x{:05x}/0x{m:05x}", value.ipv6_label)),
    }
    if mask.ct_state != 0 {
        let names: Vec<(&str, u16)> = CT_STATE_NAMES
            .iter()
            .map(|&(n, b)| (n, u16::from(b)))
            .collect();
        match flag_list(value.ct_state.into(), mask.ct_state.into(), &names) {
            Some(list) => parts.push(format!("ct_state={list}")),
            None => parts.push(format!(
                "ct_state=0x{:02x}/0x{:02x}",
                value.ct_state, mask.ct_state
            )),
        }
    }
    if mask.ct_zone != 0 {
        parts.push(format!("ct_zone={}", value.ct_zone));
    }
    match mask.ct_mark {
        0 => {}
        u32::MAX => parts.push(format!("ct_mark={:#x}", value.ct_mark)),
        m => parts.push(format!("ct_mark={:#x}/{m:#x}", value.ct_mark)),
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
            Action::OutputInPort => "in_port".to_string(),
            Action::Resubmit { port, table } => match (port, table) {
                (Some(p), None) => format!("resubmit:{}", port_name(*p, names)),
                (p, t) => format!(
                    "resubmit({},{})",
                    p.map(|p| port_name(p, names)).unwrap_or_default(),
                    t.map(|t| t.to_string()).unwrap_or_default()
                ),
            },
            Action::GotoTable(t) => format!("goto_table:{t}"),
            Action::Ct(ct) => {
                let mut args = Vec::new();
                if ct.commit {
                    args.push("commit".to_string());
                }
                if ct.zone != 0 {
                    args.push(format!("zone={}", ct.zone));
                }
                if let Some(t) = ct.table {
                    args.push(format!("table={t}"));
                }
                if let Some((v, m)) = ct.mark {
                    if m == u32::MAX {
                        args.push(format!("exec(set_field:{v:#x}->ct_mark)"));
                    } else {
                        args.push(format!("exec(set_field:{v:#x}/{m:#x}->ct_mark)"));
                    }
                }
                format!("ct({})", args.join(","))
            }
            Action::SetNwSrc(IpAddr::V4(ip)) => format!("mod_nw_src:{ip}"),
            Action::SetNwDst(IpAddr::V4(ip)) => format!("mod_nw_dst:{ip}"),
            Action::SetNwSrc(IpAddr::V6(ip)) => format!("set_field:{ip}->ipv6_src"),
            Action::SetNwDst(IpAddr::V6(ip)) => format!("set_field:{ip}->ipv6_dst"),
            Action::SetTpSrc(p) => format!("mod_tp_src:{p}"),
            Action::SetTpDst(p) => format!("mod_tp_dst:{p}"),
            Action::SetDscp(d) => format!("set_field:{d}->ip_dscp"),
            Action::SetEcn(e) => format!("set_field:{e}->nw_ecn"),
            Action::SetTtl(t) => format!("set_field:{t}->nw_ttl"),
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
