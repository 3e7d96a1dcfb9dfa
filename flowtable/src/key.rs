//! Flow keys: the fields of a packet that forwarding decisions may depend on.
//!
//! [`FlowKey::extract`] parses a frame once, without allocating and without panicking on any
//! input, into the key and a [`Layout`] of where its headers are. Fields of layers that are
//! absent or malformed are zero, as in OVS: such packets are still switched on their L2
//! fields.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::port::PortId;
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, WireError, arp, ethernet, ipv4, ipv6, l4};

/// Set in [`FlowKey::vlan`] when the frame carried an 802.1Q tag (OVS's CFI convention).
pub const VLAN_PRESENT: u16 = 0x1000;

/// The fields a decision may depend on; hashed whole by the caches.
///
/// IPv4 addresses are stored as the low 32 bits of `nw_src`/`nw_dst`; ARP's sender and target
/// protocol addresses go there too, and its opcode into `nw_proto`, as OVS does. ICMP type and
/// code go into `tp_src` and `tp_dst`.
///
/// The `ct_*` fields are not read from the packet: they are zero when a packet arrives and set
/// by the pipeline's `ct` action (connection tracking) for the tables it continues in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Ingress port.
    pub in_port: PortId,
    /// `VLAN_PRESENT | vid` for a tagged frame, 0 for an untagged one.
    pub vlan: u16,
    /// EtherType of the payload (behind the tag).
    pub dl_type: u16,
    /// IP protocol, or the ARP opcode.
    pub nw_proto: u8,
    /// IP TTL / hop limit.
    pub nw_ttl: u8,
    /// The IPv4 TOS byte or IPv6 traffic class: DSCP in the top six bits, ECN in the low two.
    pub nw_tos: u8,
    /// TCP flags, the low 12 bits of the header's 13th and 14th bytes (FIN 0x001 … NS 0x100).
    pub tcp_flags: u16,
    /// IPv6 flow label (20 bits).
    pub ipv6_label: u32,
    /// Connection tracking state bits (`flowtable::conntrack::state`), 0 before `ct`.
    pub ct_state: u8,
    /// The conntrack zone the packet was last tracked in.
    pub ct_zone: u16,
    /// The mark of the packet's connection.
    pub ct_mark: u32,
    /// Source MAC (low 48 bits).
    pub dl_src: u64,
    /// Destination MAC (low 48 bits).
    pub dl_dst: u64,
    /// Source IP (IPv4 in the low 32 bits) or ARP sender IP.
    pub nw_src: u128,
    /// Destination IP (IPv4 in the low 32 bits) or ARP target IP.
    pub nw_dst: u128,
    /// TCP/UDP source port, ICMP type.
    pub tp_src: u16,
    /// TCP/UDP destination port, ICMP code.
    pub tp_dst: u16,
}

/// The network layer of a frame, as far as it parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L3 {
    /// Not IP or ARP, or malformed.
    #[default]
    None,
    /// A valid IPv4 header.
    Ipv4,
    /// A valid IPv6 fixed header.
    Ipv6,
    /// A valid Ethernet/IPv4 ARP packet.
    Arp,
}

/// Where a frame's headers are, for code that edits them after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// What the L3 header is.
    pub l3: L3,
    /// Offset of the L3 header (after the Ethernet header and tag).
    pub l3_offset: u16,
    /// Offset of the L4 header, 0 if there is none xvs reads (also for later fragments).
    pub l4_offset: u16,
    /// End of the L3 packet (frames may carry Ethernet padding after it).
    pub l3_end: u16,
}

impl FlowKey {
    /// Parses `frame`, received on `in_port`.
    ///
    /// # Errors
    /// Only when the Ethernet header itself does not fit ([`WireError::Truncated`]); any
    /// deeper problem leaves the deeper fields zero.
    pub fn extract(frame: &[u8], in_port: PortId) -> Result<(FlowKey, Layout), WireError> {
        let eth = ethernet::Frame::new_checked(frame)?;
        let mut key = FlowKey {
            in_port,
            vlan: eth.vlan_id().map_or(0, |v| v | VLAN_PRESENT),
            dl_type: eth.payload_ethertype(),
            dl_src: eth.src_addr().to_u64(),
            dl_dst: eth.dst_addr().to_u64(),
            ..FlowKey::default()
        };
        let l3_offset = eth.header_len();
        let mut layout = Layout {
            l3_offset: l3_offset as u16,
            ..Layout::default()
        };
        let payload = eth.payload();
        match key.dl_type {
            EtherType::IPV4 => {
                if let Ok(ip) = ipv4::Packet::new_checked(payload) {
                    key.nw_src = u128::from(u32::from(ip.src_addr()));
                    key.nw_dst = u128::from(u32::from(ip.dst_addr()));
                    key.nw_proto = ip.protocol();
                    key.nw_ttl = ip.ttl();
                    key.nw_tos = ip.tos();
                    layout.l3 = L3::Ipv4;
                    layout.l3_end = (l3_offset + usize::from(ip.total_len())) as u16;
                    if !ip.is_later_fragment() {
                        key.read_l4(ip.payload(), l3_offset + ip.header_len(), &mut layout);
                    }
                }
            }
            EtherType::IPV6 => {
                if let Ok(ip) = ipv6::Packet::new_checked(payload) {
                    key.nw_src = u128::from(ip.src_addr());
                    key.nw_dst = u128::from(ip.dst_addr());
                    key.nw_proto = ip.next_header();
                    key.nw_ttl = ip.hop_limit();
                    key.nw_tos = ip.traffic_class();
                    key.ipv6_label = ip.flow_label();
                    layout.l3 = L3::Ipv6;
                    layout.l3_end =
                        (l3_offset + ipv6::HEADER_LEN + usize::from(ip.payload_len())) as u16;
                    key.read_l4(ip.payload(), l3_offset + ipv6::HEADER_LEN, &mut layout);
                }
            }
            EtherType::ARP => {
                if let Ok(a) = arp::Packet::new_checked(payload) {
                    key.nw_proto = a.operation() as u8;
                    key.nw_src = u128::from(u32::from(a.sender_ip()));
                    key.nw_dst = u128::from(u32::from(a.target_ip()));
                    layout.l3 = L3::Arp;
                    layout.l3_end = (l3_offset + arp::PACKET_LEN) as u16;
                }
            }
            _ => {}
        }
        Ok((key, layout))
    }

    fn read_l4(&mut self, segment: &[u8], offset: usize, layout: &mut Layout) {
        if let Ok(h) = l4::Header::new_checked(segment, self.nw_proto) {
            self.tp_src = h.src_port();
            self.tp_dst = h.dst_port();
            self.tcp_flags = h.tcp_flags();
            layout.l4_offset = offset as u16;
        }
    }

    /// The VLAN id of the frame's tag, if it had one.
    pub fn vlan_id(&self) -> Option<u16> {
        (self.vlan & VLAN_PRESENT != 0).then_some(self.vlan & 0x0fff)
    }

    /// Whether this is an IPv4 packet.
    pub fn is_ipv4(&self) -> bool {
        self.dl_type == EtherType::IPV4
    }

    /// Whether this is an IPv6 packet.
    pub fn is_ipv6(&self) -> bool {
        self.dl_type == EtherType::IPV6
    }

    /// The destination IP, for IP packets.
    pub fn ip_dst(&self) -> Option<IpAddr> {
        match self.dl_type {
            EtherType::IPV4 => Some(IpAddr::V4(Ipv4Addr::from(self.nw_dst as u32))),
            EtherType::IPV6 => Some(IpAddr::V6(Ipv6Addr::from(self.nw_dst))),
            _ => None,
        }
    }

    /// Whether the L4 protocol is TCP or UDP.
    pub fn is_tcp_or_udp(&self) -> bool {
        self.nw_proto == Protocol::TCP || self.nw_proto == Protocol::UDP
    }

    /// This key with every bit that is clear in `mask` cleared, field by field (the key a
    /// rule with that mask is looked up by).
    #[inline]
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        FlowKey {
            in_port: self.in_port & mask.in_port,
            vlan: self.vlan & mask.vlan,
            dl_type: self.dl_type & mask.dl_type,
            nw_proto: self.nw_proto & mask.nw_proto,
            nw_ttl: self.nw_ttl & mask.nw_ttl,
            dl_src: self.dl_src & mask.dl_src,
            dl_dst: self.dl_dst & mask.dl_dst,
            nw_src: self.nw_src & mask.nw_src,
            nw_dst: self.nw_dst & mask.nw_dst,
            tp_src: self.tp_src & mask.tp_src,
            tp_dst: self.tp_dst & mask.tp_dst,
            nw_tos: self.nw_tos & mask.nw_tos,
            tcp_flags: self.tcp_flags & mask.tcp_flags,
            ipv6_label: self.ipv6_label & mask.ipv6_label,
            ct_state: self.ct_state & mask.ct_state,
            ct_zone: self.ct_zone & mask.ct_zone,
            ct_mark: self.ct_mark & mask.ct_mark,
        }
    }

    /// Every bit of every field set: the mask of an exact match.
    pub const ALL_BITS: FlowKey = FlowKey {
        in_port: u16::MAX,
        vlan: u16::MAX,
        dl_type: u16::MAX,
        nw_proto: u8::MAX,
        nw_ttl: u8::MAX,
        dl_src: u64::MAX,
        dl_dst: u64::MAX,
        nw_src: u128::MAX,
        nw_dst: u128::MAX,
        tp_src: u16::MAX,
        tp_dst: u16::MAX,
        nw_tos: u8::MAX,
        tcp_flags: u16::MAX,
        ipv6_label: u32::MAX,
        ct_state: u8::MAX,
        ct_zone: u16::MAX,
        ct_mark: u32::MAX,
    };

    /// No bit set: the key of [`Default`], usable in constants.
    pub const ZERO: FlowKey = FlowKey {
        in_port: 0,
        vlan: 0,
        dl_type: 0,
        nw_proto: 0,
        nw_ttl: 0,
        dl_src: 0,
        dl_dst: 0,
        nw_src: 0,
        nw_dst: 0,
        tp_src: 0,
        tp_dst: 0,
        nw_tos: 0,
        tcp_flags: 0,
        ipv6_label: 0,
        ct_state: 0,
        ct_zone: 0,
        ct_mark: 0,
    };
}

/// Finishes a TCP or UDP checksum that the sender left for offload (see
/// [`crate::wire::checksum::finish_partial`]). Does nothing to other packets.
pub fn finish_partial_checksum(frame: &mut [u8], key: &FlowKey, layout: &Layout) -> bool {
    use crate::wire::checksum::{Finish, finish_partial, pseudo_header_v4, pseudo_header_v6};

    if layout.l4_offset == 0 || !key.is_tcp_or_udp() {
        return false;
    }
    let start = usize::from(layout.l4_offset);
    let end = usize::from(layout.l3_end);
    let Some(segment) = frame.get_mut(start..end) else {
        return false;
    };
    let len = segment.len();
    let pseudo = match layout.l3 {
        L3::Ipv4 => pseudo_header_v4(
            Ipv4Addr::from(key.nw_src as u32),
            Ipv4Addr::from(key.nw_dst as u32),
            key.nw_proto,
            len as u16,
        ),
        L3::Ipv6 => pseudo_header_v6(
            Ipv6Addr::from(key.nw_src),
            Ipv6Addr::from(key.nw_dst),
            key.nw_proto,
            len as u32,
        ),
        _ => return false,
    };
    let is_udp = key.nw_proto == Protocol::UDP;
    let at = l4::checksum_offset(key.nw_proto).unwrap_or(0);
    finish_partial(segment, pseudo, at, is_udp) == Finish::Finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    // 02:..:01 -> 02:..:02, IPv4 10.0.0.1:1000 -> 10.0.0.2:2000 UDP, 4 bytes payload.
    static UDP_FRAME: [u8; 46] = [
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
        0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
        0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, 1, 2, 3, 4, // udp
    ];

    #[test]
    fn extracts_udp() {
        let (key, layout) = FlowKey::extract(&UDP_FRAME, 3).unwrap();
        assert_eq!(key.in_port, 3);
        assert_eq!(key.vlan, 0);
        assert_eq!(key.dl_type, EtherType::IPV4);
        assert_eq!(key.nw_proto, 17);
        assert_eq!(key.nw_src, 0x0a00_0001);
        assert_eq!(key.nw_dst, 0x0a00_0002);
        assert_eq!((key.tp_src, key.tp_dst), (1000, 2000));
        assert_eq!(layout.l3, L3::Ipv4);
        assert_eq!(layout.l3_offset, 14);
        assert_eq!(layout.l4_offset, 34);
        assert_eq!(layout.l3_end, 46);
    }

    #[test]
    fn truncated_ip_keeps_l2() {
        let (key, layout) = FlowKey::extract(&UDP_FRAME[..30], 1).unwrap();
        assert_eq!(key.dl_type, EtherType::IPV4);
        assert_eq!(key.nw_src, 0);
        assert_eq!(layout.l3, L3::None);
        assert!(FlowKey::extract(&UDP_FRAME[..13], 1).is_err());
    }

    #[test]
    fn tagged_frame() {
        let mut f = Vec::from(&UDP_FRAME[..12]);
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        f.extend_from_slice(&UDP_FRAME[12..]);
        let (key, layout) = FlowKey::extract(&f, 1).unwrap();
        assert_eq!(key.vlan_id(), Some(100));
        assert_eq!(key.dl_type, EtherType::IPV4);
        assert_eq!(layout.l4_offset, 38);
        assert_eq!((key.tp_src, key.tp_dst), (1000, 2000));
    }

    #[test]
    fn finishes_partial_udp_checksum() {
        let mut f = UDP_FRAME;
        let pseudo = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            17,
            12,
        );
        f[40..42].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        let (key, layout) = FlowKey::extract(&f, 1).unwrap();
        assert!(finish_partial_checksum(&mut f, &key, &layout));
        assert!(checksum::verify(&f[34..], pseudo));
        assert!(!finish_partial_checksum(&mut f, &key, &layout));
    }

    #[test]
    fn masking_is_field_by_field_and() {
        let (key, _) = FlowKey::extract(&UDP_FRAME, 3).unwrap();
        let mask = FlowKey {
            nw_dst: 0xffff_ff00,
            tp_dst: 0xff00,
            dl_type: 0xffff,
            ..FlowKey::default()
        };
        let m = key.masked(&mask);
        assert_eq!(m.nw_dst, 0x0a00_0000);
        assert_eq!(m.tp_dst, 2000 & 0xff00);
        assert_eq!(m.dl_type, EtherType::IPV4);
        assert_eq!((m.in_port, m.nw_src, m.tp_src, m.nw_ttl), (0, 0, 0, 0));
        assert_eq!(m.masked(&mask), m);
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        for len in 0..UDP_FRAME.len() {
            let _ = FlowKey::extract(&UDP_FRAME[..len], 0);
        }
        let mut junk = [0xffu8; 64];
        for i in 0..64 {
            junk[i] = (i * 37) as u8;
            let _ = FlowKey::extract(&junk, 0);
        }
    }
}
