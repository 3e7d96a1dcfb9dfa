//! Editing a frame in place: the byte work of a decision's steps.
//!
//! A [`FrameBuf`] is a frame inside a larger buffer (a UMEM chunk) with room in front of it, so
//! that a VLAN tag can be pushed by moving the 12 address bytes down instead of the payload up.

use crate::port::EgressTag;
use crate::wire::ethernet::{self, HEADER_LEN, VLAN_TAG_LEN};
use crate::wire::{EtherType, EthernetAddress, WireError, ipv4, ipv6};

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
