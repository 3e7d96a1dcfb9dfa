//! The action list after `actions=`: each action's name and argument, and the rule that
//! `drop` stands alone (and an empty list is refused).

use super::fields::field_names;
use super::lex::{Token, parse_uint, resolve_port};
use super::suggest::closest;
use super::{FlowSpecError, invalid};
use crate::port::PortId;
use crate::rule::Action;
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
];

pub(super) fn parse_actions(
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
        Some(_) => Ok(vec![Action::Drop]),
        None if actions.is_empty() => Err(FlowSpecError::EmptyActions { offset }),
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
