//! IPv4 headers.

use core::net::Ipv4Addr;

use super::{Field, WireError, checksum, get_u16, set_u16};

mod field {
    use super::Field;
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: Field = 2..4;
    pub(super) const FLAGS_FRAG: Field = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Field = 10..12;
    pub(super) const SRC: Field = 12..16;
    pub(super) const DST: Field = 16..20;
}

/// Minimum (option-less) header length.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers xvs looks at.
#[derive(Debug)]
pub struct Protocol;

impl Protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// A read/write view of an IPv4 header and its payload.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    ///
    /// # Errors
    /// See [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks version 4, a header length of at least 20 bytes, and that the header and the
    /// total length fit the buffer (trailing Ethernet padding is allowed). After it succeeds no
    /// accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::Malformed`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = self.header_len();
        let total = usize::from(self.total_len());
        if header_len < HEADER_LEN || total < header_len {
            return Err(WireError::Malformed);
        }
        if b.len() < total {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The TOS / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether this is a fragment other than the first (its payload has no L4 header).
    pub fn is_later_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff != 0
    }

    /// Whether this is any fragment (more-fragments set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x3fff != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The payload's protocol.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(super::get_u32(self.buffer.as_ref(), field::SRC))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(super::get_u32(self.buffer.as_ref(), field::DST))
    }

    /// Whether the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        checksum::fold(checksum::sum(&b[..self.header_len()])) == 0xffff
    }

    /// The payload (up to the total length, without Ethernet padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the TTL, updating the header checksum incrementally (RFC 1624).
    pub fn set_ttl_update_checksum(&mut self, ttl: u8) {
        let b = self.buffer.as_mut();
        let old = u16::from_be_bytes([b[field::TTL], b[field::PROTOCOL]]);
        let new = u16::from_be_bytes([ttl, b[field::PROTOCOL]]);
        b[field::TTL] = ttl;
        let sum = get_u16(b, field::CHECKSUM);
        set_u16(b, field::CHECKSUM, checksum::update(sum, old, new));
    }

    /// Sets the source address (no checksum update).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (no checksum update).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let b = self.buffer.as_mut();
        set_u16(b, field::CHECKSUM, 0);
        let sum = !checksum::fold(checksum::sum(&b[..header_len]));
        set_u16(b, field::CHECKSUM, sum);
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// Writes a 20-byte header with the given fields and a correct checksum.
///
/// # Panics
/// If `buf` is shorter than 20 bytes.
pub fn emit(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: u16, ttl: u8) {
    let b = &mut buf[..HEADER_LEN];
    b.fill(0);
    b[field::VER_IHL] = 0x45;
    set_u16(b, field::LENGTH, HEADER_LEN as u16 + payload_len);
    set_u16(b, field::FLAGS_FRAG, 0x4000); // don't fragment
    b[field::TTL] = ttl;
    b[field::PROTOCOL] = protocol;
    b[field::SRC].copy_from_slice(&src.octets());
    b[field::DST].copy_from_slice(&dst.octets());
    let sum = !checksum::fold(checksum::sum(b));
    set_u16(b, field::CHECKSUM, sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.1 -> 10.0.0.2, ICMP, TTL 64, total 28, a real checksum.
    static HEADER: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x14, 0xab, 10, 0, 0, 1, 10, 0,
        0, 2, 8, 0, 0xf7, 0xff, 0, 0, 0, 0,
    ];

    #[test]
    fn reads_and_verifies() {
        let p = Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.protocol(), Protocol::ICMP);
        assert_eq!(p.ttl(), 64);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn ttl_update_keeps_checksum_valid() {
        let mut bytes = HEADER;
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        for ttl in (0..64).rev() {
            p.set_ttl_update_checksum(ttl);
            assert!(p.verify_checksum(), "ttl {ttl}");
        }
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Packet::new_checked(&HEADER[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = HEADER;
        bad[0] = 0x44; // IHL 4
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut long = HEADER;
        long[3] = 0x40; // total length 64 > 28
        assert_eq!(
            Packet::new_checked(&long[..]).unwrap_err(),
            WireError::Truncated
        );
        let mut v6 = HEADER;
        v6[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&v6[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn emit_is_valid() {
        let mut buf = [0u8; 20];
        emit(
            &mut buf,
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            17,
            0,
            64,
        );
        assert!(Packet::new_checked(&buf[..]).unwrap().verify_checksum());
    }
}
