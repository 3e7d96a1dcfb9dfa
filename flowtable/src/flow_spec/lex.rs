//! Lexing the flow text: splitting it into tokens, and reading the literals inside a token
//! (numbers, masks, MAC addresses, IP prefixes, port names or numbers).

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::port::PortId;
use crate::wire::EthernetAddress;

/// One token of the text and where it starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) text: &'a str,
    pub(super) offset: usize,
}

pub(super) fn is_separator(c: char) -> bool {
    c == ',' || c.is_ascii_whitespace()
}

/// Splits the match part into tokens, and finds the action list (offset, text) after
/// `actions=`.
pub(super) fn split(text: &str) -> (Vec<Token<'_>>, Option<(usize, &str)>) {
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

/// A number in decimal or `0x` hex.
pub(super) fn parse_uint(s: &str) -> Option<u128> {
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
pub(super) fn parse_uint_(s: &str, max: u128) -> Option<(u128, u128)> {
    let (value, mask) = match s.split_once('/') {
        Some((v, m)) => (parse_uint(v)?, parse_uint(m)?),
        None => (parse_uint(s)?, max),
    };
    (value <= max && mask <= max).then_some((value, mask))
}

pub(super) fn parse_mac_(s: &str) -> Option<(u64, u64)> {
    let (mac, mask) = match s.split_once('/') {
        Some((a, m)) => (a, m.parse::<EthernetAddress>().ok()?.to_u64()),
        None => (s, 0xffff_ffff_ffff),
    };
    Some((mac.parse::<EthernetAddress>().ok()?.to_u64(), mask))
}

pub(super) fn prefix_mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(len))) >> (128 - u32::from(width))
    }
}

/// `a.b.c.d`, `a.b.c.d/len` or `a.b.c.d/m.m.m.m`.
pub(super) fn parse_ipv4_prefix(s: &str) -> Option<(u32, u32)> {
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
pub(super) fn parse_ipv6_prefix(s: &str) -> Option<(u128, u128)> {
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

pub(super) fn resolve_port(s: &str, ports: &dyn Fn(&str) -> Option<PortId>) -> Option<PortId> {
    if s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        ports(s)
    }
}
