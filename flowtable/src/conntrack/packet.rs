//! [`CtPacket`]: the few facts conntrack needs from one packet, read once from its bytes.

use super::key::ConnKey;
use crate::key::{FlowKey, L3, Layout};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, ipv4, ipv6, l4};

/// TCP flag bits (the low byte of the flags field).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// The IPv6 fragment extension header's protocol number.
const IPV6_FRAGMENT: u8 = 44;
/// TCP option kinds read here.
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_WINDOW: u8 = 3;
/// RFC 7323's largest window shift.
pub(super) const TCP_MAX_WSCALE: u8 = 14;

/// What conntrack needs from one packet; built by [`CtPacket::parse`] or
/// [`CtPacket::from_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtPacket {
    /// This packet's own direction as a key (zone included). For a reply this is the
    /// connection's key reversed.
    pub tuple: ConnKey,
    /// What the L4 header says.
    pub l4: CtL4,
}

/// The L4 facts of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtL4 {
    /// A TCP segment.
    Tcp(TcpSegment),
    /// A UDP datagram.
    Udp,
    /// An ICMP/ICMPv6 echo request (`reply == false`) or reply.
    IcmpEcho {
        /// Whether it is an echo reply.
        reply: bool,
    },
    /// An ICMP/ICMPv6 error (destination unreachable, time exceeded, packet too big,
    /// parameter problem) about the packet whose tuple is `inner`.
    IcmpError {
        /// The embedded packet's tuple, in that packet's direction, in this packet's zone.
        inner: ConnKey,
    },
    /// Another IP protocol, or another ICMP type: tracked by addresses alone, as OVS's
    /// conntrack-other.
    Other,
    /// Conntrack cannot read it: the verdict is `TRK|INV`.
    Invalid(CtInvalid),
}

/// Why a packet is [`CtL4::Invalid`] before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtInvalid {
    /// A fragment conntrack cannot see the L4 header of (xvs does not reassemble).
    Fragment,
    /// The IP header or the L4 header is truncated or malformed.
    Malformed,
    /// An ICMP error whose embedded header is missing, truncated or not trackable.
    BadIcmpError,
}

/// The TCP fields the state machine and the window checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Flag bits, see [`tcp_flags`].
    pub flags: u8,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Window field (unscaled).
    pub window: u16,
    /// The window-scale option's shift (clamped to 14), if the segment carried one.
    pub wscale: Option<u8>,
    /// Payload bytes after the TCP header.
    pub payload_len: u32,
    /// Built from a flow key only: sequence numbers are unknown, so window checks are
    /// skipped; flags are the key's, and when the key has none (a hand-written trace) the
    /// state machine treats the segment as a SYN when it has no connection and as an ACK
    /// otherwise.
    pub from_key: bool,
}

impl CtPacket {
    /// Reads what conntrack needs from `frame`, whose [`FlowKey`] and [`Layout`] are
    /// `key`/`layout` (as [`FlowKey::extract`] returned them).
    ///
    /// Never panics on any bytes and never allocates. Returns `None` for frames that are not
    /// IPv4/IPv6 (the caller reports `TRK|INV`); an IP packet whose L4 part cannot be read
    /// comes back as [`CtL4::Invalid`].
    pub fn parse(frame: &[u8], key: &FlowKey, layout: &Layout, zone: u16) -> Option<CtPacket> {
        let l3 = frame.get(usize::from(layout.l3_offset)..)?;
        let (ipv6, proto, src, dst, payload) = match layout.l3 {
            L3::Ipv4 => {
                let mut tuple = ip_tuple(key, zone, false);
                let Ok(ip) = ipv4::Packet::new_checked(l3) else {
                    return Some(CtPacket::invalid(tuple, CtInvalid::Malformed));
                };
                if ip.is_later_fragment() {
                    tuple.proto = ip.protocol();
                    return Some(CtPacket::invalid(tuple, CtInvalid::Fragment));
                }
                let (src, dst) = (u32::from(ip.src_addr()), u32::from(ip.dst_addr()));
                // check_len made the header and total length fit.
                let payload = l3.get(ip.header_len()..usize::from(ip.total_len()));
                let payload = payload.unwrap_or_default();
                (
                    false,
                    ip.protocol(),
                    u128::from(src),
                    u128::from(dst),
                    payload,
                )
            }
            L3::Ipv6 => {
                let tuple = ip_tuple(key, zone, true);
                let Ok(ip) = ipv6::Packet::new_checked(l3) else {
                    return Some(CtPacket::invalid(tuple, CtInvalid::Malformed));
                };
                if ip.next_header() == IPV6_FRAGMENT {
                    return Some(CtPacket::invalid(tuple, CtInvalid::Fragment));
                }
                let (src, dst) = (u128::from(ip.src_addr()), u128::from(ip.dst_addr()));
                let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
                let payload = l3.get(ipv6::HEADER_LEN..end).unwrap_or_default();
                (true, ip.next_header(), src, dst, payload)
            }
            L3::None | L3::Arp => return None,
        };
        let mut tuple = ConnKey {
            zone,
            ipv6,
            proto,
            src,
            dst,
            src_port: 0,
            dst_port: 0,
            icmp_id: 0,
        };
        let l4 = read_l4(&mut tuple, payload);
        Some(CtPacket { tuple, l4 })
    }

    /// A packet seen only through its [`FlowKey`] (no frame bytes, as `xvsctl trace` has):
    /// TCP sequence numbers are unknown (see [`TcpSegment::from_key`]), an ICMP
    /// echo has identifier 0, and an ICMP error, having no embedded header, is invalid.
    /// `None` for keys that are not IPv4/IPv6.
    pub fn from_key(key: &FlowKey, zone: u16) -> Option<CtPacket> {
        let ipv6 = match key.dl_type {
            EtherType::IPV4 => false,
            EtherType::IPV6 => true,
            _ => return None,
        };
        let mut tuple = ip_tuple(key, zone, ipv6);
        let l4 = match key.nw_proto {
            Protocol::TCP => {
                (tuple.src_port, tuple.dst_port) = (key.tp_src, key.tp_dst);
                CtL4::Tcp(TcpSegment {
                    flags: key.tcp_flags as u8,
                    seq: 0,
                    ack: 0,
                    window: 0,
                    wscale: None,
                    payload_len: 0,
                    from_key: true,
                })
            }
            Protocol::UDP => {
                (tuple.src_port, tuple.dst_port) = (key.tp_src, key.tp_dst);
                CtL4::Udp
            }
            Protocol::ICMP | Protocol::ICMPV6 => match classify_icmp(ipv6, key.tp_src as u8) {
                IcmpKind::Echo { reply, types } => {
                    (tuple.src_port, tuple.dst_port) = types;
                    CtL4::IcmpEcho { reply }
                }
                IcmpKind::Error => CtL4::Invalid(CtInvalid::BadIcmpError),
                IcmpKind::Other => CtL4::Other,
            },
            _ => CtL4::Other,
        };
        Some(CtPacket { tuple, l4 })
    }

    fn invalid(tuple: ConnKey, why: CtInvalid) -> CtPacket {
        CtPacket {
            tuple,
            l4: CtL4::Invalid(why),
        }
    }
}

/// The addresses and protocol from a flow key, ports zero.
fn ip_tuple(key: &FlowKey, zone: u16, ipv6: bool) -> ConnKey {
    ConnKey {
        zone,
        ipv6,
        proto: key.nw_proto,
        src: key.nw_src,
        dst: key.nw_dst,
        src_port: 0,
        dst_port: 0,
        icmp_id: 0,
    }
}

enum IcmpKind {
    /// Echo request or reply; `types` are (this direction's type, the other's).
    Echo {
        reply: bool,
        types: (u16, u16),
    },
    Error,
    Other,
}

fn classify_icmp(ipv6: bool, icmp_type: u8) -> IcmpKind {
    let (request, reply) = if ipv6 {
        (l4::ICMPV6_ECHO_REQUEST, l4::ICMPV6_ECHO_REPLY)
    } else {
        (l4::ICMP_ECHO_REQUEST, l4::ICMP_ECHO_REPLY)
    };
    let (request, reply) = (u16::from(request), u16::from(reply));
    match (ipv6, icmp_type) {
        (_, t) if u16::from(t) == request => IcmpKind::Echo {
            reply: false,
            types: (request, reply),
        },
        (_, t) if u16::from(t) == reply => IcmpKind::Echo {
            reply: true,
            types: (reply, request),
        },
        // Destination unreachable, time exceeded, parameter problem.
        (false, 3 | 11 | 12) => IcmpKind::Error,
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        (true, 1..=4) => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

/// Fills `tuple`'s ports from the L4 bytes and says what they are.
fn read_l4(tuple: &mut ConnKey, segment: &[u8]) -> CtL4 {
    match tuple.proto {
        Protocol::TCP => match read_tcp(segment) {
            Some((ports, seg)) => {
                (tuple.src_port, tuple.dst_port) = ports;
                CtL4::Tcp(seg)
            }
            None => CtL4::Invalid(CtInvalid::Malformed),
        },
        Protocol::UDP => match segment.get(..l4::UDP_HEADER_LEN) {
            Some(h) => {
                (tuple.src_port, tuple.dst_port) = (be16(h, 0), be16(h, 2));
                CtL4::Udp
            }
            None => CtL4::Invalid(CtInvalid::Malformed),
        },
        Protocol::ICMP | Protocol::ICMPV6 => {
            let Some(h) = segment.get(..l4::ICMP_HEADER_LEN) else {
                return CtL4::Invalid(CtInvalid::Malformed);
            };
            match classify_icmp(tuple.ipv6, h[0]) {
                IcmpKind::Echo { reply, types } => {
                    (tuple.src_port, tuple.dst_port) = types;
                    tuple.icmp_id = be16(h, 4);
                    CtL4::IcmpEcho { reply }
                }
                IcmpKind::Error => match read_inner(tuple, &segment[l4::ICMP_HEADER_LEN..]) {
                    Some(inner) => CtL4::IcmpError { inner },
                    None => CtL4::Invalid(CtInvalid::BadIcmpError),
                },
                IcmpKind::Other => CtL4::Other,
            }
        }
        _ => CtL4::Other,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The ports and segment of a TCP header, if it is whole (data offset within 5..=len).
fn read_tcp(segment: &[u8]) -> Option<((u16, u16), TcpSegment)> {
    let h = segment.get(..l4::TCP_HEADER_LEN)?;
    let header_len = usize::from(h[12] >> 4) * 4;
    if header_len < l4::TCP_HEADER_LEN {
        return None;
    }
    let options = segment.get(l4::TCP_HEADER_LEN..header_len)?;
    let seg = TcpSegment {
        flags: h[13],
        seq: be32(h, 4),
        ack: be32(h, 8),
        window: be16(h, 14),
        wscale: window_scale(options),
        payload_len: (segment.len() - header_len) as u32,
        from_key: false,
    };
    Some(((be16(h, 0), be16(h, 2)), seg))
}

/// The window-scale option's shift, as OVS's `tcp_get_wscale` reads it.
fn window_scale(mut options: &[u8]) -> Option<u8> {
    let mut wscale = None;
    while let [kind, rest @ ..] = options {
        match *kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => options = rest,
            _ => {
                let [len, ..] = rest else { break };
                if let (TCPOPT_WINDOW, 3.., Some(shift)) = (*kind, *len, rest.get(1)) {
                    wscale = Some((*shift).min(TCP_MAX_WSCALE));
                }
                let len = usize::from(*len).max(2);
                options = options.get(len..).unwrap_or(&[]);
            }
        }
    }
    wscale
}

/// The tuple of the packet embedded in an ICMP error (its IP header and at least the 8 bytes
/// after it, RFC 792/4443), in the outer packet's zone.
fn read_inner(outer: &ConnKey, bytes: &[u8]) -> Option<ConnKey> {
    let (proto, src, dst, l4) = if outer.ipv6 {
        let h = bytes.get(..ipv6::HEADER_LEN)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[at..at + 16]);
            u128::from_be_bytes(a)
        };
        (h[6], addr(8), addr(24), &bytes[ipv6::HEADER_LEN..])
    } else {
        let h = bytes.get(..ipv4::HEADER_LEN)?;
        let header_len = usize::from(h[0] & 0x0f) * 4;
        // A later fragment carries no L4 header to match.
        if h[0] >> 4 != 4 || header_len < ipv4::HEADER_LEN || be16(h, 6) & 0x1fff != 0 {
            return None;
        }
        let src = u128::from(be32(h, 12));
        let dst = u128::from(be32(h, 16));
        (h[9], src, dst, bytes.get(header_len..)?)
    };
    let l4 = l4.get(..8)?;
    let mut inner = ConnKey {
        zone: outer.zone,
        ipv6: outer.ipv6,
        proto,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        icmp_id: 0,
    };
    match proto {
        Protocol::TCP | Protocol::UDP => {
            (inner.src_port, inner.dst_port) = (be16(l4, 0), be16(l4, 2))
        }
        Protocol::ICMP | Protocol::ICMPV6 => match classify_icmp(outer.ipv6, l4[0]) {
            IcmpKind::Echo { types, .. } => {
                (inner.src_port, inner.dst_port) = types;
                inner.icmp_id = be16(l4, 4);
            }
            // Errors about errors are never sent (RFC 1122); such a packet is bogus.
            IcmpKind::Error => return None,
            IcmpKind::Other => {}
        },
        _ => {}
    }
    Some(inner)
}
