//! Editing a frame in place: the byte work of a decision's steps.
//!
//! A [`FrameBuf`] is a frame inside a larger buffer (a UMEM chunk) with room in front of it, so
//! that a VLAN tag can be pushed by moving the 12 address bytes down instead of the payload up.

use core::net::Ipv6Addr;

use crate::port::EgressTag;
use crate::wire::ethernet::{self, HEADER_LEN, VLAN_TAG_LEN};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress, WireError, arp, checksum, ipv4, ipv6, l4};

mod rewrite;
#[cfg(test)]
mod rewrite_tests;

/// Why an edit could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditError {
    /// No room in front of the frame for a tag.
    NoHeadroom,
    /// The frame is too short for the edit.
    Truncated,
    /// TTL or hop limit is 1 or less: the packet must be dropped.
    TtlExceeded,
}

impl From<WireError> for EditError {
    fn from(_: WireError) -> Self {
        EditError::Truncated
    }
}

/// A frame at `offset..offset + len` of `buffer`.
#[derive(Debug)]
pub struct FrameBuf<'a> {
    buffer: &'a mut [u8],
    offset: usize,
    len: usize,
}

impl<'a> FrameBuf<'a> {
    /// Wraps the frame at `offset..offset + len` of `buffer`.
    ///
    /// # Errors
    /// [`EditError::Truncated`] if the range does not fit in `buffer`.
    pub fn new(buffer: &'a mut [u8], offset: usize, len: usize) -> Result<Self, EditError> {
        if offset.checked_add(len).is_none_or(|end| end > buffer.len()) {
            return Err(EditError::Truncated);
        }
        Ok(FrameBuf {
            buffer,
            offset,
            len,
        })
    }

    /// Where the frame starts in the buffer.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The frame's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[self.offset..self.offset + self.len]
    }

    /// The frame's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buffer[self.offset..self.offset + self.len]
    }

    fn ethernet(&mut self) -> Result<ethernet::Frame<&mut [u8]>, EditError> {
        Ok(ethernet::Frame::new_checked(self.bytes_mut())?)
    }

    /// Rewrites the source MAC.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a frame shorter than an Ethernet header.
    pub fn set_eth_src(&mut self, mac: EthernetAddress) -> Result<(), EditError> {
        self.ethernet()?.set_src_addr(mac);
        Ok(())
    }

    /// Rewrites the destination MAC.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a frame shorter than an Ethernet header.
    pub fn set_eth_dst(&mut self, mac: EthernetAddress) -> Result<(), EditError> {
        self.ethernet()?.set_dst_addr(mac);
        Ok(())
    }

    /// The VID of the outer tag, if any.
    pub fn vlan_id(&self) -> Option<u16> {
        ethernet::Frame::new_checked(self.bytes())
            .ok()
            .and_then(|f| f.vlan_id())
    }

    /// Adds an 802.1Q tag with `vid` (priority 0) in front of the EtherType.
    ///
    /// # Errors
    /// [`EditError::NoHeadroom`] without 4 bytes in front; [`EditError::Truncated`] for a
    /// frame shorter than an Ethernet header.
    pub fn push_vlan(&mut self, vid: u16) -> Result<(), EditError> {
        if self.len < HEADER_LEN {
            return Err(EditError::Truncated);
        }
        if self.offset < VLAN_TAG_LEN {
            return Err(EditError::NoHeadroom);
        }
        let start = self.offset;
        self.buffer
            .copy_within(start..start + 12, start - VLAN_TAG_LEN);
        let tag_at = start - VLAN_TAG_LEN + 12;
        self.buffer[tag_at..tag_at + 2].copy_from_slice(&EtherType::VLAN.to_be_bytes());
        self.buffer[tag_at + 2..tag_at + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
        self.offset -= VLAN_TAG_LEN;
        self.len += VLAN_TAG_LEN;
        Ok(())
    }

    /// Removes the outer 802.1Q tag, if there is one.
    pub fn strip_vlan(&mut self) {
        if self.vlan_id().is_none() {
            return;
        }
        let start = self.offset;
        self.buffer
            .copy_within(start..start + 12, start + VLAN_TAG_LEN);
        self.offset += VLAN_TAG_LEN;
        self.len -= VLAN_TAG_LEN;
    }

    /// Sets the VID of the outer tag, adding a tag if there is none.
    ///
    /// # Errors
    /// As [`push_vlan`](Self::push_vlan) when a tag must be added.
    pub fn set_vlan_vid(&mut self, vid: u16) -> Result<(), EditError> {
        if self.vlan_id().is_some() {
            self.ethernet()?.set_vlan_id(vid);
            Ok(())
        } else {
            self.push_vlan(vid)
        }
    }

    /// Makes the frame's outer tag match what a port wants.
    ///
    /// # Errors
    /// As [`push_vlan`](Self::push_vlan) when a tag must be added.
    pub fn apply_egress(&mut self, tag: EgressTag) -> Result<(), EditError> {
        match tag {
            EgressTag::Untagged => {
                self.strip_vlan();
                Ok(())
            }
            EgressTag::Tagged(vid) => {
                if self.vlan_id() == Some(vid) {
                    Ok(())
                } else {
                    self.set_vlan_vid(vid)
                }
            }
        }
    }

    /// Changes the frame's length (within its buffer), for replies of another size.
    ///
    /// # Errors
    /// [`EditError::Truncated`] if the buffer has no room.
    pub fn set_len(&mut self, len: usize) -> Result<(), EditError> {
        if self.offset + len > self.buffer.len() {
            return Err(EditError::Truncated);
        }
        self.len = len;
        Ok(())
    }

    /// The EtherType of the payload and the offset of the L3 header.
    fn l3(&self) -> Result<(u16, usize), EditError> {
        let eth = ethernet::Frame::new_checked(self.bytes())?;
        Ok((eth.payload_ethertype(), eth.header_len()))
    }

    /// Turns the frame around: it goes back to its sender, from `mac`.
    fn reverse_ethernet(&mut self, mac: EthernetAddress) -> Result<(), EditError> {
        let mut eth = self.ethernet()?;
        let sender = eth.src_addr();
        eth.set_dst_addr(sender);
        eth.set_src_addr(mac);
        Ok(())
    }

    /// Turns an ARP request for one of the router's addresses into the reply, in place:
    /// "the requested address is at `mac`".
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a frame that is not a valid ARP packet.
    pub fn arp_reply(&mut self, mac: EthernetAddress) -> Result<(), EditError> {
        let (ethertype, l3) = self.l3()?;
        if ethertype != EtherType::ARP {
            return Err(EditError::Truncated);
        }
        let request = arp::Packet::new_checked(&self.bytes()[l3..])?;
        let (sha, spa, tpa) = (
            request.sender_hw(),
            request.sender_ip(),
            request.target_ip(),
        );
        arp::emit(
            &mut self.bytes_mut()[l3..],
            arp::OP_REPLY,
            mac,
            tpa,
            sha,
            spa,
        );
        self.reverse_ethernet(mac)
    }

    /// Turns an ICMP or ICMPv6 echo request to the router into the echo reply, in place.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a frame that is not a valid echo request.
    pub fn echo_reply(&mut self, mac: EthernetAddress) -> Result<(), EditError> {
        let (ethertype, l3) = self.l3()?;
        let payload = &mut self.bytes_mut()[l3..];
        match ethertype {
            EtherType::IPV4 => {
                let mut ip = ipv4::Packet::new_checked(&mut *payload)?;
                if ip.protocol() != Protocol::ICMP {
                    return Err(EditError::Truncated);
                }
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                ip.set_src_addr(dst);
                ip.set_dst_addr(src);
                ip.set_ttl_update_checksum(64);
                let icmp = ip.payload_mut();
                if icmp.len() < l4::ICMP_HEADER_LEN || icmp[0] != l4::ICMP_ECHO_REQUEST {
                    return Err(EditError::Truncated);
                }
                flip_type(icmp, l4::ICMP_ECHO_REPLY);
            }
            EtherType::IPV6 => {
                let mut ip = ipv6::Packet::new_checked(&mut *payload)?;
                if ip.next_header() != Protocol::ICMPV6 {
                    return Err(EditError::Truncated);
                }
                let (src, dst) = (ip.src_addr(), ip.dst_addr());
                let bytes = ip.payload_mut();
                if bytes.len() < l4::ICMP_HEADER_LEN || bytes[0] != l4::ICMPV6_ECHO_REQUEST {
                    return Err(EditError::Truncated);
                }
                flip_type(bytes, l4::ICMPV6_ECHO_REPLY);
                let header = &mut self.bytes_mut()[l3..l3 + ipv6::HEADER_LEN];
                header[8..24].copy_from_slice(&dst.octets());
                header[24..40].copy_from_slice(&src.octets());
                header[7] = 64;
            }
            _ => return Err(EditError::Truncated),
        }
        self.reverse_ethernet(mac)
    }

    /// Turns an IPv6 neighbor solicitation for one of the router's addresses into the
    /// solicited advertisement, in place: router, solicited, override flags, and a target
    /// link-layer address option with `mac`. `is_ours` says whether the solicited target is a
    /// router address.
    ///
    /// # Errors
    /// [`EditError::Truncated`] for a frame that is not a valid solicitation, one for a target
    /// that is not ours, or one sent from the unspecified address (duplicate address
    /// detection, which a router does not answer).
    pub fn neighbor_advert(
        &mut self,
        mac: EthernetAddress,
        is_ours: impl Fn(Ipv6Addr) -> bool,
    ) -> Result<(), EditError> {
        const BODY: usize = 32; // type, code, checksum, flags, target, one 8-byte option
        let (ethertype, l3) = self.l3()?;
        if ethertype != EtherType::IPV6 {
            return Err(EditError::Truncated);
        }
        let (src, target) = {
            let ip = ipv6::Packet::new_checked(&self.bytes()[l3..])?;
            let body = ip.payload();
            if ip.next_header() != Protocol::ICMPV6
                || body.len() < 24
                || body[0] != l4::ICMPV6_NEIGHBOR_SOLICIT
            {
                return Err(EditError::Truncated);
            }
            let mut target = [0u8; 16];
            target.copy_from_slice(&body[8..24]);
            (ip.src_addr(), Ipv6Addr::from(target))
        };
        if src.is_unspecified() || !is_ours(target) {
            return Err(EditError::Truncated);
        }
        self.set_len(l3 + ipv6::HEADER_LEN + BODY)?;
        let packet = &mut self.bytes_mut()[l3..];
        ipv6::emit(packet, target, src, Protocol::ICMPV6, BODY as u16, 255);
        let body = &mut packet[ipv6::HEADER_LEN..ipv6::HEADER_LEN + BODY];
        body.fill(0);
        body[0] = l4::ICMPV6_NEIGHBOR_ADVERT;
        body[4] = 0xe0; // router, solicited, override
        body[8..24].copy_from_slice(&target.octets());
        body[24] = 2; // target link-layer address
        body[25] = 1; // in units of 8 bytes
        body[26..32].copy_from_slice(&mac.0);
        let pseudo = checksum::pseudo_header_v6(target, src, Protocol::ICMPV6, BODY as u32);
        checksum::fill(body, pseudo, 2, false);
        self.reverse_ethernet(mac)
    }

    /// Decrements the IPv4 TTL (updating the header checksum incrementally) or the IPv6 hop
    /// limit. Non-IP frames are left alone.
    ///
    /// # Errors
    /// [`EditError::TtlExceeded`] when the TTL is 1 or less (the packet must be dropped);
    /// [`EditError::Truncated`] for a malformed IP header.
    pub fn dec_ttl(&mut self) -> Result<(), EditError> {
        let (ethertype, l3) = {
            let eth = ethernet::Frame::new_checked(self.bytes())?;
            (eth.payload_ethertype(), eth.header_len())
        };
        let payload = &mut self.bytes_mut()[l3..];
        match ethertype {
            EtherType::IPV4 => {
                let mut ip = ipv4::Packet::new_checked(payload)?;
                if ip.ttl() <= 1 {
                    return Err(EditError::TtlExceeded);
                }
                ip.set_ttl_update_checksum(ip.ttl() - 1);
            }
            EtherType::IPV6 => {
                let mut ip = ipv6::Packet::new_checked(payload)?;
                if ip.hop_limit() <= 1 {
                    return Err(EditError::TtlExceeded);
                }
                ip.set_hop_limit(ip.hop_limit() - 1);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Sets the type byte of an ICMP header, updating its checksum incrementally.
fn flip_type(icmp: &mut [u8], new_type: u8) {
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = new_type;
    let new = u16::from_be_bytes([icmp[0], icmp[1]]);
    let sum = u16::from_be_bytes([icmp[2], icmp[3]]);
    icmp[2..4].copy_from_slice(&checksum::update(sum, old, new).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_with(frame: &[u8], headroom: usize) -> Vec<u8> {
        let mut chunk = vec![0u8; headroom];
        chunk.extend_from_slice(frame);
        chunk.extend_from_slice(&[0; 8]);
        chunk
    }

    static FRAME: [u8; 34] = [
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
        0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];

    #[test]
    fn push_then_strip_restores_frame() {
        let mut chunk = chunk_with(&FRAME, 8);
        let mut f = FrameBuf::new(&mut chunk, 8, FRAME.len()).unwrap();
        f.push_vlan(100).unwrap();
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.len(), FRAME.len() + 4);
        assert_eq!(&f.bytes()[..12], &FRAME[..12]);
        assert_eq!(&f.bytes()[16..], &FRAME[12..]);
        f.set_vlan_vid(200).unwrap();
        assert_eq!(f.vlan_id(), Some(200));
        f.strip_vlan();
        assert_eq!(f.bytes(), &FRAME[..]);
        assert_eq!(f.offset(), 8);
    }

    #[test]
    fn push_needs_headroom() {
        let mut chunk = chunk_with(&FRAME, 2);
        let mut f = FrameBuf::new(&mut chunk, 2, FRAME.len()).unwrap();
        assert_eq!(f.push_vlan(5), Err(EditError::NoHeadroom));
        assert!(FrameBuf::new(&mut chunk, 2, 1000).is_err());
    }

    #[test]
    fn egress_tags() {
        let mut chunk = chunk_with(&FRAME, 8);
        let mut f = FrameBuf::new(&mut chunk, 8, FRAME.len()).unwrap();
        f.apply_egress(EgressTag::Tagged(7)).unwrap();
        assert_eq!(f.vlan_id(), Some(7));
        f.apply_egress(EgressTag::Tagged(7)).unwrap();
        assert_eq!(f.len(), FRAME.len() + 4);
        f.apply_egress(EgressTag::Untagged).unwrap();
        assert_eq!(f.bytes(), &FRAME[..]);
    }

    #[test]
    fn dec_ttl_until_exceeded() {
        let mut frame = FRAME;
        ipv4::Packet::new_unchecked(&mut frame[14..]).fill_checksum();
        frame[22] = 3;
        ipv4::Packet::new_unchecked(&mut frame[14..]).fill_checksum();
        let mut chunk = chunk_with(&frame, 0);
        let mut f = FrameBuf::new(&mut chunk, 0, frame.len()).unwrap();
        f.dec_ttl().unwrap();
        f.dec_ttl().unwrap();
        assert_eq!(f.dec_ttl(), Err(EditError::TtlExceeded));
        let ip = ipv4::Packet::new_checked(&f.bytes()[14..]).unwrap();
        assert_eq!(ip.ttl(), 1);
        assert!(ip.verify_checksum());
    }
}

#[cfg(test)]
mod reply_tests {
    use core::net::Ipv4Addr;

    use super::*;

    const HOST: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const ROUTER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

    fn frame(ethertype: u16, dst: EthernetAddress, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&HOST.0);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn arp_request_becomes_reply() {
        let mut req = [0u8; 28];
        let host_ip = Ipv4Addr::new(10, 1, 0, 1);
        let router_ip = Ipv4Addr::new(10, 1, 0, 254);
        arp::emit(
            &mut req,
            arp::OP_REQUEST,
            HOST,
            host_ip,
            EthernetAddress([0; 6]),
            router_ip,
        );
        let mut f = frame(EtherType::ARP, EthernetAddress::BROADCAST, &req);
        let len = f.len();
        let mut buf = FrameBuf::new(&mut f, 0, len).unwrap();
        buf.arp_reply(ROUTER).unwrap();
        let eth = ethernet::Frame::new_checked(buf.bytes()).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (HOST, ROUTER));
        let a = arp::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(a.operation(), arp::OP_REPLY);
        assert_eq!((a.sender_hw(), a.sender_ip()), (ROUTER, router_ip));
        assert_eq!((a.target_hw(), a.target_ip()), (HOST, host_ip));
    }

    #[test]
    fn icmp_echo_request_becomes_reply_with_valid_checksums() {
        let src = Ipv4Addr::new(10, 1, 0, 1);
        let dst = Ipv4Addr::new(10, 1, 0, 254);
        let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        checksum::fill(&mut icmp, 0, 2, false);
        let mut ip = vec![0u8; 20];
        ipv4::emit(&mut ip, src, dst, Protocol::ICMP, icmp.len() as u16, 63);
        ip.extend_from_slice(&icmp);
        let mut f = frame(EtherType::IPV4, ROUTER, &ip);
        let len = f.len();
        let mut buf = FrameBuf::new(&mut f, 0, len).unwrap();
        buf.echo_reply(ROUTER).unwrap();
        let eth = ethernet::Frame::new_checked(buf.bytes()).unwrap();
        assert_eq!(eth.dst_addr(), HOST);
        let p = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((p.src_addr(), p.dst_addr(), p.ttl()), (dst, src, 64));
        assert!(p.verify_checksum());
        assert_eq!(p.payload()[0], l4::ICMP_ECHO_REPLY);
        assert!(checksum::verify(p.payload(), 0));
    }

    #[test]
    fn icmpv6_echo_and_neighbor_solicitation() {
        let host: Ipv6Addr = "fd00:1::1".parse().unwrap();
        let router: Ipv6Addr = "fd00:1::fe".parse().unwrap();
        // Echo request.
        let mut body = vec![128u8, 0, 0, 0, 0, 7, 0, 1, 1, 2, 3];
        let pseudo = checksum::pseudo_header_v6(host, router, 58, body.len() as u32);
        checksum::fill(&mut body, pseudo, 2, false);
        let mut ip = vec![0u8; 40];
        ipv6::emit(&mut ip, host, router, 58, body.len() as u16, 64);
        ip.extend_from_slice(&body);
        let mut f = frame(EtherType::IPV6, ROUTER, &ip);
        let len = f.len();
        let mut buf = FrameBuf::new(&mut f, 0, len).unwrap();
        buf.echo_reply(ROUTER).unwrap();
        let p = ipv6::Packet::new_checked(&buf.bytes()[14..]).unwrap();
        assert_eq!((p.src_addr(), p.dst_addr()), (router, host));
        assert_eq!(p.payload()[0], 129);
        let pseudo = checksum::pseudo_header_v6(router, host, 58, p.payload().len() as u32);
        assert!(checksum::verify(p.payload(), pseudo));

        // Neighbor solicitation with a source link-layer option.
        let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&router.octets());
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 1]);
        let snm: Ipv6Addr = "ff02::1:ff00:fe".parse().unwrap();
        let pseudo = checksum::pseudo_header_v6(host, snm, 58, ns.len() as u32);
        checksum::fill(&mut ns, pseudo, 2, false);
        let mut ip = vec![0u8; 40];
        ipv6::emit(&mut ip, host, snm, 58, ns.len() as u16, 255);
        ip.extend_from_slice(&ns);
        let mut f = frame(
            EtherType::IPV6,
            EthernetAddress([0x33, 0x33, 0xff, 0, 0, 0xfe]),
            &ip,
        );
        let len = f.len();
        let mut buf = FrameBuf::new(&mut f, 0, len).unwrap();
        assert!(buf.neighbor_advert(ROUTER, |_| false).is_err());
        buf.neighbor_advert(ROUTER, |t| t == router).unwrap();
        let eth = ethernet::Frame::new_checked(buf.bytes()).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (HOST, ROUTER));
        let p = ipv6::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            (p.src_addr(), p.dst_addr(), p.hop_limit()),
            (router, host, 255)
        );
        let na = p.payload();
        assert_eq!(na[0], 136);
        assert_eq!(&na[8..24], &router.octets());
        assert_eq!(&na[26..32], &ROUTER.0);
        let pseudo = checksum::pseudo_header_v6(router, host, 58, na.len() as u32);
        assert!(checksum::verify(na, pseudo));
    }
}
