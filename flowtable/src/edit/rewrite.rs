//! Header rewrites: OpenFlow's `mod_nw_src`/`mod_nw_dst`, `mod_tp_src`/`mod_tp_dst`,
//! `mod_nw_tos` and `set_field` on DSCP, ECN, TTL and IPv6 addresses.
//!
//! Every checksum that covers a rewritten field is updated incrementally (RFC 1624), never
//! recomputed: the L4 checksum of a first fragment covers bytes that travel in later ones, and
//! an update costs a few additions where a recomputation reads the whole payload. The updates
//! assume complete checksums. A checksum left partial for offload holds only the pseudo-header
//! sum, uncomplemented, which these updates would corrupt; the worker finishes such checksums
//! as it receives the frame (`key::finish_partial_checksum`), before any step runs.

use core::net::IpAddr;

use super::{EditError, FrameBuf};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, checksum, ipv4, ipv6};

/// Offset of the IPv4 header checksum.
const IPV4_CHECKSUM: usize = 10;
/// Offsets of the source and destination addresses in the IPv4 and IPv6 headers.
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const IPV6_SRC: usize = 8;
const IPV6_DST: usize = 24;
/// Offset of the IPv4 TTL and of the IPv6 hop limit.
const IPV4_TTL: usize = 8;
const IPV6_HOP_LIMIT: usize = 7;
/// Offsets of the ports in TCP and UDP headers.
const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;

/// Where an IP packet's headers lie in the frame.
#[derive(Debug, Clone, Copy)]
struct IpPacket {
    /// Offset of the IP header.
    l3: usize,
    is_ipv6: bool,
    /// The L4 segment, unless the packet is a later fragment (or an IPv6 one with no next
    /// header).
    l4: Option<Segment>,
}

/// An L4 segment within the frame.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Offset of its header.
    start: usize,
    /// Offset of its end (the IP packet's end; Ethernet padding excluded).
    end: usize,
    protocol: u8,
    /// IPv6 only: a routing header with segments left precedes it (see
    /// [`ipv6::UpperLayer::routed`]).
    routed: bool,
}

impl Segment {
    /// The offset, in the frame, of the checksum field of a TCP, UDP (or, on IPv6, ICMPv6)
    /// segment: the protocols whose checksum covers the pseudo-header. `None` for others.
    ///
    /// # Errors
    /// [`EditError::Truncated`] if the segment is too short for the field.
    fn pseudo_checksum(&self, is_ipv6: bool) -> Result<Option<usize>, EditError> {
        let at = match self.protocol {
            Protocol::TCP => 16,
            Protocol::UDP => 6,
            Protocol::ICMPV6 if is_ipv6 => 2,
            _ => return Ok(None),
        };
        if self.end - self.start < at + 2 {
            return Err(EditError::Truncated);
        }
        Ok(Some(self.start + at))
    }
}

impl FrameBuf<'_> {
    /// Rewrites the source address, updating the IPv4 header checksum and the TCP, UDP or
    /// ICMPv6 checksum (pseudo-header). A frame that is not IP, or of the other family, is
    /// left alone.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a malformed IP packet, or one whose L4 header is too short
    /// for its checksum field; the frame is then unchanged.
    pub fn set_ip_src(&mut self, addr: IpAddr) -> Result<(), EditError> {
        self.set_ip_addr(addr, false)
    }

    /// Rewrites the destination address, as [`set_ip_src`](Self::set_ip_src) does the
    /// source.
    ///
    /// # Errors
    /// As [`set_ip_src`](Self::set_ip_src).
    pub fn set_ip_dst(&mut self, addr: IpAddr) -> Result<(), EditError> {
        self.set_ip_addr(addr, true)
    }

    /// Rewrites the TCP or UDP source port, updating the checksum. Other frames, and later
    /// fragments, are left alone.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a malformed IP packet or a short TCP/UDP header; the frame
    /// is then unchanged.
    pub fn set_tp_src(&mut self, port: u16) -> Result<(), EditError> {
        self.set_port(port, SRC_PORT)
    }

    /// Rewrites the TCP or UDP destination port, as [`set_tp_src`](Self::set_tp_src) does the
    /// source port.
    ///
    /// # Errors
    /// As [`set_tp_src`](Self::set_tp_src).
    pub fn set_tp_dst(&mut self, port: u16) -> Result<(), EditError> {
        self.set_port(port, DST_PORT)
    }

    /// Sets the DSCP, the top six bits of the IPv4 TOS or IPv6 traffic class (`dscp` is taken
    /// modulo 64), updating the IPv4 header checksum. Non-IP frames are left alone.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a malformed IP packet.
    pub fn set_ip_dscp(&mut self, dscp: u8) -> Result<(), EditError> {
        self.set_traffic_class(0xfc, dscp << 2)
    }

    /// Sets the ECN bits, the low two of the IPv4 TOS or IPv6 traffic class (`ecn` is taken
    /// modulo 4), updating the IPv4 header checksum. Non-IP frames are left alone.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a malformed IP packet.
    pub fn set_ip_ecn(&mut self, ecn: u8) -> Result<(), EditError> {
        self.set_traffic_class(0x03, ecn)
    }

    /// Sets the IPv4 TTL (updating the header checksum) or the IPv6 hop limit. Unlike
    /// [`dec_ttl`](Self::dec_ttl) it drops nothing, not even for 0. Non-IP frames are left
    /// alone.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a malformed IP packet.
    pub fn set_ip_ttl(&mut self, ttl: u8) -> Result<(), EditError> {
        let Some(ip) = self.ip_packet()? else {
            return Ok(());
        };
        let frame = self.bytes_mut();
        if ip.is_ipv6 {
            frame[ip.l3 + IPV6_HOP_LIMIT] = ttl;
        } else {
            // The TTL shares its word with the protocol.
            let word = ip.l3 + IPV4_TTL;
            let old = [frame[word], frame[word + 1]];
            frame[word] = ttl;
            update_ipv4_header(frame, ip.l3, &old, word);
        }
        Ok(())
    }

    /// The IP packet of the frame, `None` if it is not IPv4 or IPv6.
    fn ip_packet(&self) -> Result<Option<IpPacket>, EditError> {
        let (ethertype, l3) = self.l3()?;
        let packet = &self.bytes()[l3..];
        match ethertype {
            EtherType::IPV4 => {
                let ip = ipv4::Packet::new_checked(packet)?;
                let l4 = (!ip.is_later_fragment()).then(|| Segment {
                    start: l3 + ip.header_len(),
                    end: l3 + usize::from(ip.total_len()),
                    protocol: ip.protocol(),
                    routed: false,
                });
                Ok(Some(IpPacket {
                    l3,
                    is_ipv6: false,
                    l4,
                }))
            }
            EtherType::IPV6 => {
                let ip = ipv6::Packet::new_checked(packet)?;
                let payload = l3 + ipv6::HEADER_LEN;
                let l4 = ipv6::upper_layer(ip.next_header(), ip.payload())?.map(|upper| Segment {
                    start: payload + upper.offset,
                    end: payload + usize::from(ip.payload_len()),
                    protocol: upper.protocol,
                    routed: upper.routed,
                });
                Ok(Some(IpPacket {
                    l3,
                    is_ipv6: true,
                    l4,
                }))
            }
            _ => Ok(None),
        }
    }

    fn set_ip_addr(&mut self, addr: IpAddr, is_dst: bool) -> Result<(), EditError> {
        let Some(ip) = self.ip_packet()? else {
            return Ok(());
        };
        let (field, v4, v6);
        let new: &[u8] = match (addr, ip.is_ipv6) {
            (IpAddr::V4(a), false) => {
                field = ip.l3 + if is_dst { IPV4_DST } else { IPV4_SRC };
                v4 = a.octets();
                &v4
            }
            (IpAddr::V6(a), true) => {
                field = ip.l3 + if is_dst { IPV6_DST } else { IPV6_SRC };
                v6 = a.octets();
                &v6
            }
            _ => return Ok(()),
        };
        // With a route still to follow, the pseudo-header names the route's end, not this
        // destination.
        let l4 = match ip.l4 {
            Some(segment) if !(is_dst && segment.routed) => segment
                .pseudo_checksum(ip.is_ipv6)?
                .map(|at| (at, segment.protocol == Protocol::UDP)),
            _ => None,
        };
        let frame = self.bytes_mut();
        let mut old = [0u8; 16];
        let old = &mut old[..new.len()];
        old.copy_from_slice(&frame[field..field + new.len()]);
        frame[field..field + new.len()].copy_from_slice(new);
        if !ip.is_ipv6 {
            update_ipv4_header(frame, ip.l3, old, field);
        }
        if let Some((at, is_udp)) = l4 {
            update_l4(frame, at, old, new, is_udp);
        }
        Ok(())
    }

    fn set_port(&mut self, port: u16, field: usize) -> Result<(), EditError> {
        let Some(segment) = self.ip_packet()?.and_then(|ip| ip.l4) else {
            return Ok(());
        };
        let is_udp = match segment.protocol {
            Protocol::TCP => false,
            Protocol::UDP => true,
            _ => return Ok(()),
        };
        let Some(at) = segment.pseudo_checksum(false)? else {
            return Ok(());
        };
        let frame = self.bytes_mut();
        let field = segment.start + field;
        let old = [frame[field], frame[field + 1]];
        let new = port.to_be_bytes();
        frame[field..field + 2].copy_from_slice(&new);
        update_l4(frame, at, &old, &new, is_udp);
        Ok(())
    }

    /// Sets the bits of the traffic class (IPv4: TOS) that `mask` selects to those of `value`.
    fn set_traffic_class(&mut self, mask: u8, value: u8) -> Result<(), EditError> {
        let Some(ip) = self.ip_packet()? else {
            return Ok(());
        };
        let frame = self.bytes_mut();
        let at = ip.l3;
        if ip.is_ipv6 {
            // Version (4 bits), traffic class (8), flow label (20).
            let class = (frame[at] << 4) | (frame[at + 1] >> 4);
            let class = (class & !mask) | (value & mask);
            frame[at] = (frame[at] & 0xf0) | (class >> 4);
            frame[at + 1] = (frame[at + 1] & 0x0f) | (class << 4);
        } else {
            // The TOS shares its word with the version and header length.
            let old = [frame[at], frame[at + 1]];
            frame[at + 1] = (frame[at + 1] & !mask) | (value & mask);
            update_ipv4_header(frame, at, &old, at);
        }
        Ok(())
    }
}

/// Updates the IPv4 header checksum of the header at `l3` after the bytes at `field` (an even
/// offset from `l3`) changed from `old` to what they are now.
fn update_ipv4_header(frame: &mut [u8], l3: usize, old: &[u8], field: usize) {
    let at = l3 + IPV4_CHECKSUM;
    let sum = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let updated = checksum::update_bytes(sum, old, &frame[field..field + old.len()]);
    frame[at..at + 2].copy_from_slice(&updated.to_be_bytes());
}

/// Updates the L4 checksum field at `at` after covered bytes changed from `old` to `new`.
fn update_l4(frame: &mut [u8], at: usize, old: &[u8], new: &[u8], is_udp: bool) {
    let sum = u16::from_be_bytes([frame[at], frame[at + 1]]);
    let updated = checksum::update_l4(sum, old, new, is_udp);
    frame[at..at + 2].copy_from_slice(&updated.to_be_bytes());
}
