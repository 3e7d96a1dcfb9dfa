//! The upcall tag: how a frame that reaches the workers through a device shared by many
//! ports says which port it came in on.
//!
//! Four bytes between the source MAC and the frame's own EtherType (or VLAN tag): the
//! EtherType [`ETHERTYPE`] (IEEE 802 local experimental 1) and the ingress port number, both
//! in network order. Whoever redirects a frame to the shared device inserts the tag; the
//! worker takes it out before deciding the frame, which then looks exactly as it did on its
//! port.
//!
//! ```text
//! | dst MAC (6) | src MAC (6) | 0x88b5 (2) | port (2) | EtherType or 802.1Q tag ... |
//! ```

use crate::PortId;

/// The tag's EtherType.
pub const ETHERTYPE: u16 = 0x88b5;
/// Bytes the tag adds to a frame.
pub const LEN: usize = 4;

const MACS: usize = 12;

/// Inserts a tag for `port` into the frame at `buf[offset..offset + len]`, using 4 bytes of
/// headroom in front of it. Returns the tagged frame's offset and length, or `None` when
/// there is no headroom or the frame is shorter than an Ethernet header.
pub fn push(buf: &mut [u8], offset: usize, len: usize, port: PortId) -> Option<(usize, usize)> {
    if offset < LEN || len < MACS + 2 || offset + len > buf.len() {
        return None;
    }
    let start = offset - LEN;
    buf.copy_within(offset..offset + MACS, start);
    buf[start + MACS..start + MACS + 2].copy_from_slice(&ETHERTYPE.to_be_bytes());
    buf[start + MACS + 2..start + MACS + 4].copy_from_slice(&port.to_be_bytes());
    Some((start, len + LEN))
}

/// Takes the tag out of the frame at `buf[offset..offset + len]`. Returns the ingress port
/// and the untagged frame's offset and length, or `None` when the frame carries no valid tag
/// (too short, another EtherType, port 0).
pub fn pop(buf: &mut [u8], offset: usize, len: usize) -> Option<(PortId, usize, usize)> {
    let frame = buf.get(offset..offset.checked_add(len)?)?;
    if len < MACS + LEN + 2 {
        return None;
    }
    if u16::from_be_bytes([frame[MACS], frame[MACS + 1]]) != ETHERTYPE {
        return None;
    }
    let port = u16::from_be_bytes([frame[MACS + 2], frame[MACS + 3]]);
    if port == 0 {
        return None;
    }
    buf.copy_within(offset..offset + MACS, offset + LEN);
    Some((port, offset + LEN, len - LEN))
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

    #[test]
    fn push_then_pop_gives_the_frame_back() {
        let mut buf = [0u8; 32];
        buf[8..28].copy_from_slice(&FRAME);
        let (offset, len) = push(&mut buf, 8, FRAME.len(), 513).unwrap();
        assert_eq!((offset, len), (4, 24));
        assert_eq!(&buf[16..20], &[0x88, 0xb5, 0x02, 0x01]);
        let (port, offset, len) = pop(&mut buf, offset, len).unwrap();
        assert_eq!((port, offset, len), (513, 8, FRAME.len()));
        assert_eq!(&buf[offset..offset + len], &FRAME);
    }

    #[test]
    fn pop_refuses_what_is_not_a_tag() {
        let mut plain = FRAME;
        assert_eq!(pop(&mut plain, 0, FRAME.len()), None, "an untagged frame");
        assert_eq!(plain, FRAME, "left as it was");
        let mut buf = [0u8; 32];
        buf[8..28].copy_from_slice(&FRAME);
        let (offset, len) = push(&mut buf, 8, FRAME.len(), 0).unwrap();
        assert_eq!(pop(&mut buf, offset, len), None, "port 0 is no port");
        assert_eq!(pop(&mut buf, offset, 17), None, "too short");
        assert_eq!(pop(&mut buf, 30, 10), None, "past the buffer");
        assert_eq!(pop(&mut buf, usize::MAX, 2), None, "offset overflow");
    }

    #[test]
    fn push_needs_headroom() {
        let mut buf = FRAME;
        assert_eq!(push(&mut buf, 0, FRAME.len(), 1), None);
    }
}
