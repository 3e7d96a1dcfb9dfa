//! The upcall prefix: how a frame that reaches the workers through a device shared by many
//! ports says which port it came in on, and the VLAN tag it carried as metadata.
//!
//! Eight bytes in front of the Ethernet header, all in network order:
//!
//! ```text
//! | 0x88b5 (2) | port (2) | TCI (2) | flags (2) | dst MAC | src MAC | EtherType ... |
//! ```
//!
//! [`MAGIC`] is the IEEE 802 local experimental EtherType 1, a sanity check. A tc program
//! writes the prefix with `bpf_skb_change_head`, which grows the frame in front of its MAC
//! header and leaves the network header, the protocol and GSO alone: when the kernel later
//! segments a GSO skb, every segment carries the prefix. The kernel holds an skb's outer VLAN
//! tag apart from its bytes (an XDP program, and so AF_XDP, would never see it), so the
//! prefix carries it: with [`FLAG_VLAN`] the worker puts the tag back into the frame, which
//! then looks exactly as it did on its port.

use crate::PortId;

/// The first two bytes of a prefix.
pub const MAGIC: u16 = 0x88b5;
/// Bytes the prefix adds in front of a frame.
pub const LEN: usize = 8;
/// Flag: the frame had a VLAN tag (its TCI is in the prefix).
pub const FLAG_VLAN: u16 = 1;
/// Flag: that tag was an 802.1ad (service) tag rather than 802.1Q.
pub const FLAG_VLAN_AD: u16 = 2;

const MACS: usize = 12;
const TAG: usize = 4;

/// A frame's VLAN tag as the prefix carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Priority, DEI and VID.
    pub tci: u16,
    /// 802.1ad rather than 802.1Q.
    pub service: bool,
}

/// Writes a prefix for `port` (and `tag`) in front of the frame at `buf[offset..offset +
/// len]`, in its headroom. Returns the prefixed frame's offset and length, or `None` without
/// `LEN` bytes of headroom.
pub fn push(
    buf: &mut [u8],
    offset: usize,
    len: usize,
    port: PortId,
    tag: Option<Tag>,
) -> Option<(usize, usize)> {
    if offset < LEN || offset.checked_add(len)? > buf.len() {
        return None;
    }
    let start = offset - LEN;
    let (tci, flags) = match tag {
        None => (0, 0),
        Some(t) => (t.tci, FLAG_VLAN | if t.service { FLAG_VLAN_AD } else { 0 }),
    };
    buf[start..start + 2].copy_from_slice(&MAGIC.to_be_bytes());
    buf[start + 2..start + 4].copy_from_slice(&port.to_be_bytes());
    buf[start + 4..start + 6].copy_from_slice(&tci.to_be_bytes());
    buf[start + 6..start + 8].copy_from_slice(&flags.to_be_bytes());
    Some((start, len + LEN))
}

/// Takes the prefix off the frame at `buf[offset..offset + len]` and puts a VLAN tag it
/// carried back into the frame. Returns the ingress port and the frame's new offset and
/// length, or `None` when there is no valid prefix (too short, no magic, port 0) and the
/// buffer is left as it was.
pub fn pop(buf: &mut [u8], offset: usize, len: usize) -> Option<(PortId, usize, usize)> {
    let frame = buf.get(offset..offset.checked_add(len)?)?;
    if len < LEN + MACS + 2 {
        return None;
    }
    let word = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    if word(0) != MAGIC {
        return None;
    }
    let port = word(2);
    if port == 0 {
        return None;
    }
    let (tci, flags) = (word(4), word(6));
    if flags & FLAG_VLAN == 0 {
        return Some((port, offset + LEN, len - LEN));
    }
    // Move the MACs 4 bytes into the prefix's room and write the tag after them.
    let start = offset + LEN - TAG;
    buf.copy_within(offset + LEN..offset + LEN + MACS, start);
    let tpid: u16 = if flags & FLAG_VLAN_AD != 0 {
        0x88a8
    } else {
        0x8100
    };
    buf[start + MACS..start + MACS + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[start + MACS + 2..start + MACS + 4].copy_from_slice(&tci.to_be_bytes());
    Some((port, start, len - LEN + TAG))
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 20] = [
        0x02, 0, 0, 0, 0, 0x02, // dst
        0x02, 0, 0, 0, 0, 0x01, // src
        0x08, 0x00, // IPv4
        0x45, 0, 0, 20, 0, 0, // the start of a header
    ];

    static TAGGED: [u8; 24] = [
        0x02, 0, 0, 0, 0, 0x02, // dst
        0x02, 0, 0, 0, 0, 0x01, // src
        0x81, 0x00, 0x20, 0x0a, // 802.1Q, priority 1, VID 10
        0x08, 0x00, // IPv4
        0x45, 0, 0, 20, 0, 0, // the start of a header
    ];

    fn prefixed(port: PortId, tag: Option<Tag>) -> ([u8; 40], usize, usize) {
        let mut buf = [0u8; 40];
        buf[12..32].copy_from_slice(&FRAME);
        let (offset, len) = push(&mut buf, 12, FRAME.len(), port, tag).unwrap();
        (buf, offset, len)
    }

    #[test]
    fn push_then_pop_gives_the_frame_back() {
        let (mut buf, offset, len) = prefixed(513, None);
        assert_eq!((offset, len), (4, 28));
        assert_eq!(&buf[4..12], &[0x88, 0xb5, 0x02, 0x01, 0, 0, 0, 0]);
        let (port, offset, len) = pop(&mut buf, offset, len).unwrap();
        assert_eq!((port, offset, len), (513, 12, FRAME.len()));
        assert_eq!(&buf[offset..offset + len], &FRAME);
    }

    #[test]
    fn a_tag_held_apart_is_put_back_into_the_frame() {
        let tag = Tag {
            tci: 0x200a,
            service: false,
        };
        let (mut buf, offset, len) = prefixed(7, Some(tag));
        assert_eq!(&buf[offset + 4..offset + 8], &[0x20, 0x0a, 0, 1]);
        let (port, offset, len) = pop(&mut buf, offset, len).unwrap();
        assert_eq!(port, 7);
        assert_eq!(&buf[offset..offset + len], &TAGGED);
        let service = Tag {
            tci: 5,
            service: true,
        };
        let (mut buf, offset, len) = prefixed(7, Some(service));
        let (_, offset, _) = pop(&mut buf, offset, len).unwrap();
        assert_eq!(&buf[offset + 12..offset + 16], &[0x88, 0xa8, 0, 5]);
    }

    #[test]
    fn pop_refuses_what_is_not_a_prefix() {
        let mut plain = [0u8; 40];
        plain[..20].copy_from_slice(&FRAME);
        let before = plain;
        assert_eq!(pop(&mut plain, 0, 40), None, "an unprefixed frame");
        assert_eq!(plain, before, "left as it was");
        let (mut buf, offset, len) = prefixed(0, None);
        assert_eq!(pop(&mut buf, offset, len), None, "port 0 is no port");
        let (mut buf, offset, _) = prefixed(1, None);
        assert_eq!(pop(&mut buf, offset, 21), None, "too short");
        assert_eq!(pop(&mut buf, 30, 20), None, "past the buffer");
        assert_eq!(pop(&mut buf, usize::MAX, 2), None, "offset overflow");
    }

    #[test]
    fn push_needs_headroom() {
        let mut buf = FRAME;
        assert_eq!(push(&mut buf, 0, FRAME.len(), 1, None), None);
        assert_eq!(
            push(&mut buf, 8, FRAME.len(), 1, None),
            None,
            "past the end"
        );
    }
}
