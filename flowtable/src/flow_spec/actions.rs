//! The action list after `actions=`: each action's name and argument, and the rule that
//! `drop` stands alone (and an empty list is refused). Commas inside parentheses belong to
//! the action (`ct(commit,zone=1,table=2)`, `resubmit(,2)`).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::fields::field_names;
use super::lex::{Token, parse_uint, resolve_port};
use super::suggest::closest;
use super::{FlowSpecError, invalid};
use crate::port::PortId;
use crate::rule::{Action, CtAction};
use crate::wire::EthernetAddress;

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
    "in_port",
    "resubmit",
    "goto_table",
    "ct",
    "mod_nw_src",
    "mod_nw_dst",
    "mod_tp_src",
    "mod_tp_dst",
    "mod_nw_tos",
    "mod_nw_ecn",
    "mod_nw_ttl",
    "set_field",
    "load",
];

/// Splits at the commas outside parentheses: (offset in `text`, part).
fn split_top(text: &str) -> Vec<(usize, &str)> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                parts.push((start, &text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push((start, &text[start..]));
    parts
}

pub(super) fn parse_actions(
    text: &str,
    offset: usize,
    table: u8,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Vec<Action>, FlowSpecError> {
    let mut actions = Vec::new();
    let mut drop_at = None;
    for (start, part) in split_top(text) {
        let trimmed = part.trim();
        let token = Token {
            text: trimmed,
            offset: offset + start + (part.len() - part.trim_start().len()),
        };
        if trimmed.is_empty() {
            continue;
        }
        match parse_action(token, table, ports)? {
            Action::Drop => drop_at = Some(token.offset),
            action => actions.push(action),
        }
    }
    match drop_at {
        Some(offset) if !actions.is_empty() => Err(FlowSpecError::DropNotAlone { offset }),
        Some(_) => Ok(vec![Action::Drop]),
        None if actions.is_empty() => Err(FlowSpecError::EmptyActions { offset }),
        _ => Ok(actions),
    }
}

fn parse_action(
    token: Token<'_>,
    table: u8,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Action, FlowSpecError> {
    if token.text.contains('(') {
        return parse_call(token, ports);
    }
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
    let number = |arg: &str, max: u128, what: &str| {
        parse_uint(arg)
            .filter(|&v| v <= max)
            .ok_or_else(|| invalid(token, format!("not {what}")))
    };
    let action = match (lower.as_str(), arg) {
        ("output" | "resubmit", Some(port)) if port.eq_ignore_ascii_case("in_port") => {
            if lower == "output" {
                Action::OutputInPort
            } else {
                Action::Resubmit {
                    port: None,
                    table: None,
                }
            }
        }
        ("in_port", None) => Action::OutputInPort,
        ("resubmit", Some(port)) => Action::Resubmit {
            port: Some(
                resolve_port(port, ports).ok_or_else(|| FlowSpecError::NoSuchPort {
                    offset: token.offset,
                    token: token.text.to_string(),
                })?,
            ),
            table: None,
        },
        ("goto_table", Some(arg)) => {
            let to = number(arg, 254, "a table (0-254)")? as u8;
            if to <= table {
                return Err(invalid(
                    token,
                    format!("goto_table must go to a later table than this flow's ({table})"),
                ));
            }
            Action::GotoTable(to)
        }
        ("mod_nw_src" | "mod_nw_dst", Some(arg)) => {
            let ip = arg
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid(token, "not an IPv4 address"))?;
            set_ip(&lower, IpAddr::V4(ip))
        }
        ("mod_tp_src", Some(arg)) => {
            Action::SetTpSrc(number(arg, 0xffff, "a port (0-65535)")? as u16)
        }
        ("mod_tp_dst", Some(arg)) => {
            Action::SetTpDst(number(arg, 0xffff, "a port (0-65535)")? as u16)
        }
        ("mod_nw_tos", Some(arg)) => {
            let tos = parse_uint(arg)
                .filter(|&v| v <= 0xff && v & 3 == 0)
                .ok_or_else(|| {
                    invalid(
                        token,
                        "not a TOS byte with the ECN bits clear (0-252, a multiple of 4)",
                    )
                })?;
            Action::SetDscp((tos >> 2) as u8)
        }
        ("mod_nw_ecn", Some(arg)) => Action::SetEcn(number(arg, 3, "an ECN value (0-3)")? as u8),
        ("mod_nw_ttl", Some(arg)) => Action::SetTtl(number(arg, 255, "a TTL (0-255)")? as u8),
        ("set_field", Some(arg)) => parse_set_field(token, arg)?,
        ("load", Some(arg)) => parse_load(token, arg)?,
        (
            "resubmit" | "goto_table" | "mod_nw_src" | "mod_nw_dst" | "mod_tp_src" | "mod_tp_dst"
            | "mod_nw_tos" | "mod_nw_ecn" | "mod_nw_ttl" | "set_field" | "load",
            None,
        ) => return Err(needs_arg("an argument")),
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
        ("flood" | "normal" | "drop" | "strip_vlan" | "dec_ttl" | "route" | "in_port", Some(_)) => {
            return Err(takes_no_arg());
        }
        _ => {
            // A bare port, as OVS takes it: `actions=2`, `actions=veth1`.
            if arg.is_none()
                && let Some(port) = resolve_port(token.text, ports)
            {
                return Ok(Action::Output(port));
            }
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

fn set_ip(name: &str, ip: IpAddr) -> Action {
    if name.ends_with("src") {
        Action::SetNwSrc(ip)
    } else {
        Action::SetNwDst(ip)
    }
}

/// The fields `set_field` and `load` write, by their OXM/NXM names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetTarget {
    EthSrc,
    EthDst,
    VlanVid,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    TpSrc,
    TpDst,
    Dscp,
    Ecn,
    Ttl,
}

const SET_FIELDS: &[(&str, SetTarget)] = &[
    ("eth_src", SetTarget::EthSrc),
    ("dl_src", SetTarget::EthSrc),
    ("eth_dst", SetTarget::EthDst),
    ("dl_dst", SetTarget::EthDst),
    ("vlan_vid", SetTarget::VlanVid),
    ("dl_vlan", SetTarget::VlanVid),
    ("ip_src", SetTarget::Ipv4Src),
    ("nw_src", SetTarget::Ipv4Src),
    ("ipv4_src", SetTarget::Ipv4Src),
    ("ip_dst", SetTarget::Ipv4Dst),
    ("nw_dst", SetTarget::Ipv4Dst),
    ("ipv4_dst", SetTarget::Ipv4Dst),
    ("ipv6_src", SetTarget::Ipv6Src),
    ("ipv6_dst", SetTarget::Ipv6Dst),
    ("tp_src", SetTarget::TpSrc),
    ("tcp_src", SetTarget::TpSrc),
    ("udp_src", SetTarget::TpSrc),
    ("tp_dst", SetTarget::TpDst),
    ("tcp_dst", SetTarget::TpDst),
    ("udp_dst", SetTarget::TpDst),
    ("ip_dscp", SetTarget::Dscp),
    ("nw_ecn", SetTarget::Ecn),
    ("ip_ecn", SetTarget::Ecn),
    ("nw_ttl", SetTarget::Ttl),
    // NXM names, for `load` (and `set_field`, which OVS also lets name them).
    ("nxm_of_eth_src", SetTarget::EthSrc),
    ("nxm_of_eth_dst", SetTarget::EthDst),
    ("nxm_of_ip_src", SetTarget::Ipv4Src),
    ("nxm_of_ip_dst", SetTarget::Ipv4Dst),
    ("nxm_of_tcp_src", SetTarget::TpSrc),
    ("nxm_of_tcp_dst", SetTarget::TpDst),
    ("nxm_of_udp_src", SetTarget::TpSrc),
    ("nxm_of_udp_dst", SetTarget::TpDst),
    ("nxm_nx_ip_ttl", SetTarget::Ttl),
    ("nxm_nx_ipv6_src", SetTarget::Ipv6Src),
    ("nxm_nx_ipv6_dst", SetTarget::Ipv6Dst),
];

fn set_target(token: Token<'_>, name: &str) -> Result<SetTarget, FlowSpecError> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix("[]").unwrap_or(&lower);
    SET_FIELDS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|&(_, t)| t)
        .ok_or_else(|| {
            let reason = if lower.contains('[') {
                "xvs writes whole fields only ([] with no bit range)".to_string()
            } else {
                format!(
                    "cannot set field \"{lower}\" (xvs sets eth_src, eth_dst, vlan_vid, ip_src, \
                     ip_dst, ipv6_src, ipv6_dst, tp_src, tp_dst, ip_dscp, nw_ecn, nw_ttl)"
                )
            };
            invalid(token, reason)
        })
}

/// The action that writes `value` (text) into `target`. `numeric` values (from `load`) are
/// numbers even for addresses.
fn set_value(
    token: Token<'_>,
    target: SetTarget,
    value: &str,
    numeric: bool,
) -> Result<Action, FlowSpecError> {
    let value = value.trim();
    let num = |max: u128, what: &str| {
        parse_uint(value)
            .filter(|&v| v <= max)
            .ok_or_else(|| invalid(token, format!("not {what}")))
    };
    let mac = || -> Result<EthernetAddress, FlowSpecError> {
        if numeric {
            Ok(EthernetAddress::from_u64(
                num(0xffff_ffff_ffff, "a 48-bit MAC")? as u64,
            ))
        } else {
            value
                .parse::<EthernetAddress>()
                .map_err(|_| invalid(token, "not a MAC address"))
        }
    };
    let v4 = || -> Result<IpAddr, FlowSpecError> {
        let ip = if numeric {
            Ipv4Addr::from(num(u32::MAX.into(), "a 32-bit IPv4 address")? as u32)
        } else {
            value
                .parse::<Ipv4Addr>()
                .map_err(|_| invalid(token, "not an IPv4 address"))?
        };
        Ok(IpAddr::V4(ip))
    };
    let v6 = || -> Result<IpAddr, FlowSpecError> {
        let ip = if numeric {
            Ipv6Addr::from(num(u128::MAX, "a 128-bit IPv6 address")?)
        } else {
            value
                .parse::<Ipv6Addr>()
                .map_err(|_| invalid(token, "not an IPv6 address"))?
        };
        Ok(IpAddr::V6(ip))
    };
    Ok(match target {
        SetTarget::EthSrc => Action::SetDlSrc(mac()?),
        SetTarget::EthDst => Action::SetDlDst(mac()?),
        // OpenFlow's vlan_vid carries the present bit (0x1000); accept it and a bare VID.
        SetTarget::VlanVid => {
            Action::SetVlanVid((num(0x1fff, "a VLAN id (0-4095)")? & 0x0fff) as u16)
        }
        SetTarget::Ipv4Src => Action::SetNwSrc(v4()?),
        SetTarget::Ipv4Dst => Action::SetNwDst(v4()?),
        SetTarget::Ipv6Src => Action::SetNwSrc(v6()?),
        SetTarget::Ipv6Dst => Action::SetNwDst(v6()?),
        SetTarget::TpSrc => Action::SetTpSrc(num(0xffff, "a port (0-65535)")? as u16),
        SetTarget::TpDst => Action::SetTpDst(num(0xffff, "a port (0-65535)")? as u16),
        SetTarget::Dscp => Action::SetDscp(num(63, "a DSCP (0-63)")? as u8),
        SetTarget::Ecn => Action::SetEcn(num(3, "an ECN value (0-3)")? as u8),
        SetTarget::Ttl => Action::SetTtl(num(255, "a TTL (0-255)")? as u8),
    })
}

/// `set_field:VALUE->FIELD`.
fn parse_set_field(token: Token<'_>, arg: &str) -> Result<Action, FlowSpecError> {
    let (value, field) = arg
        .split_once("->")
        .ok_or_else(|| invalid(token, "set_field needs VALUE->FIELD"))?;
    if value.contains('/') {
        return Err(invalid(token, "xvs sets whole fields (no /mask)"));
    }
    set_value(token, set_target(token, field)?, value, false)
}

/// `load:VALUE->NXM_FIELD[]`.
fn parse_load(token: Token<'_>, arg: &str) -> Result<Action, FlowSpecError> {
    let (value, field) = arg
        .split_once("->")
        .ok_or_else(|| invalid(token, "load needs VALUE->FIELD[]"))?;
    set_value(token, set_target(token, field)?, value, true)
}

/// Actions written as calls: `resubmit(PORT,TABLE)` and `ct(...)`.
fn parse_call(
    token: Token<'_>,
    ports: &dyn Fn(&str) -> Option<PortId>,
) -> Result<Action, FlowSpecError> {
    let text = token.text;
    let open = text.find('(').unwrap_or(0);
    let name = text[..open].to_ascii_lowercase();
    let Some(inner) = text[open + 1..].strip_suffix(')') else {
        return Err(invalid(token, "unbalanced parentheses"));
    };
    match name.as_str() {
        "resubmit" => {
            let (port, to) = inner.split_once(',').unwrap_or((inner, ""));
            let port = match port.trim() {
                "" => None,
                p if p.eq_ignore_ascii_case("in_port") => None,
                p => Some(
                    resolve_port(p, ports).ok_or_else(|| FlowSpecError::NoSuchPort {
                        offset: token.offset,
                        token: text.to_string(),
                    })?,
                ),
            };
            let to = match to.trim() {
                "" => None,
                t => Some(
                    parse_uint(t)
                        .filter(|&t| t <= 254)
                        .ok_or_else(|| invalid(token, "not a table (0-254)"))?
                        as u8,
                ),
            };
            if port.is_none() && to.is_none() {
                return Err(invalid(token, "resubmit needs a port or a table"));
            }
            Ok(Action::Resubmit { port, table: to })
        }
        "ct" => parse_ct(token, inner),
        _ => Err(FlowSpecError::UnknownAction {
            offset: token.offset,
            token: text.to_string(),
            suggestion: closest(&name, ACTION_NAMES.iter().copied()),
        }),
    }
}

/// The arguments of `ct(...)`.
fn parse_ct(token: Token<'_>, inner: &str) -> Result<Action, FlowSpecError> {
    let mut ct = CtAction::default();
    for (_, part) in split_top(inner) {
        let part = part.trim();
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (part, None),
        };
        match (name, value) {
            ("", None) => {}
            ("commit", None) => ct.commit = true,
            ("zone", Some(v)) => {
                ct.zone = parse_uint(v).filter(|&z| z <= 0xffff).ok_or_else(|| {
                    invalid(
                        token,
                        "ct zone= takes a number (0-65535); xvs does not read zones from fields",
                    )
                })? as u16;
            }
            ("table", Some(v)) => {
                ct.table = Some(
                    parse_uint(v)
                        .filter(|&t| t <= 254)
                        .ok_or_else(|| invalid(token, "ct table= takes a table (0-254)"))?
                        as u8,
                );
            }
            _ if name.starts_with("exec(") => {
                let Some(body) = part.strip_prefix("exec(").and_then(|b| b.strip_suffix(')'))
                else {
                    return Err(invalid(token, "unbalanced exec(...)"));
                };
                for (_, action) in split_top(body) {
                    let action = action.trim();
                    let Some(set) = action
                        .strip_prefix("set_field:")
                        .or_else(|| action.strip_prefix("load:"))
                    else {
                        return Err(invalid(
                            token,
                            format!("{action}: ct's exec() takes set_field:V[/M]->ct_mark only"),
                        ));
                    };
                    let (value, field) = set.split_once("->").ok_or_else(|| {
                        invalid(token, "ct's exec() takes set_field:V[/M]->ct_mark")
                    })?;
                    let field = field.trim().to_ascii_lowercase();
                    if field != "ct_mark" && field != "nxm_nx_ct_mark[]" {
                        return Err(invalid(
                            token,
                            format!("{field}: ct's exec() sets ct_mark only (xvs has no ct_label)"),
                        ));
                    }
                    let (v, m) = super::lex::parse_uint_(value.trim(), u32::MAX.into())
                        .ok_or_else(|| invalid(token, "not a mark (32 bits, optional /mask)"))?;
                    ct.mark = Some((v as u32, m as u32));
                }
            }
            ("nat" | "alg" | "force", _) => {
                return Err(FlowSpecError::Unsupported {
                    offset: token.offset,
                    token: format!("ct({name})"),
                });
            }
            _ => {
                return Err(invalid(
                    token,
                    format!(
                        "{part}: ct takes commit, zone=N, table=N and exec(set_field:V->ct_mark)"
                    ),
                ));
            }
        }
    }
    if ct.mark.is_some() && !ct.commit {
        return Err(invalid(token, "ct sets a mark only with commit"));
    }
    Ok(Action::Ct(ct))
}
