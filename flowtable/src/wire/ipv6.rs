//! IPv6 fixed headers.

use core::net::Ipv6Addr;

use super::{Field, WireError, get_u16};

mod field {
    use super::Field;
    pub(super) const VERSION: usize = 0;
    pub(super) const PAYLOAD_LEN: Field = 4..6;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: Field = 8..24;
    pub(super) const DST: Field = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// A read/write view of an IPv6 header and its payload.
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

    /// Checks version 6 and that the header and payload length fit the buffer. After it
    /// succeeds no accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::Malformed`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VERSION] >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        if b.len() < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Payload length.
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The next header (the L4 protocol when there are no extension headers).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The traffic class (DSCP and ECN, as IPv4's TOS byte).
    pub fn traffic_class(&self) -> u8 {
        let b = self.buffer.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// The flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }

    /// The payload (up to the payload length).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hop limit (IPv6 has no header checksum).
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Extension headers [`upper_layer`] walks past.
mod extension {
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const AUTHENTICATION: u8 = 51;
    pub(super) const NO_NEXT_HEADER: u8 = 59;
    pub(super) const DESTINATION_OPTIONS: u8 = 60;
}

/// Where the upper-layer (L4) header of an IPv6 packet is, past its extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Its protocol.
    pub protocol: u8,
    /// Its offset in the payload.
    pub offset: usize,
    /// A routing header with segments left comes before it: the destination of the L4
    /// pseudo-header is the route's last address, not the one in the fixed header.
    pub routed: bool,
}

/// Walks the extension headers (hop-by-hop and destination options, routing, fragment,
/// authentication) of a payload whose first header is `next_header`, to the upper-layer
/// header. `None` for a fragment other than the first (its payload continues another's) and
/// for a packet that says no header follows.
///
/// # Errors
/// [`WireError::Truncated`] if an extension header runs past the payload.
pub fn upper_layer(mut next_header: u8, payload: &[u8]) -> Result<Option<UpperLayer>, WireError> {
    let mut offset = 0;
    let mut routed = false;
    loop {
        let header = payload.get(offset..).unwrap_or_default();
        let len = match next_header {
            extension::HOP_BY_HOP | extension::ROUTING | extension::DESTINATION_OPTIONS => {
                header.get(1).map(|&units| (usize::from(units) + 1) * 8)
            }
            extension::FRAGMENT => Some(8),
            extension::AUTHENTICATION => header.get(1).map(|&units| (usize::from(units) + 2) * 4),
            extension::NO_NEXT_HEADER => return Ok(None),
            protocol => {
                return Ok(Some(UpperLayer {
                    protocol,
                    offset,
                    routed,
                }));
            }
        };
        let Some(len) = len.filter(|&len| len <= header.len()) else {
            return Err(WireError::Truncated);
        };
        match next_header {
            extension::ROUTING => routed |= header[3] != 0,
            extension::FRAGMENT if u16::from_be_bytes([header[2], header[3]]) >> 3 != 0 => {
                return Ok(None);
            }
            _ => {}
        }
        next_header = header[0];
        offset += len;
    }
}

/// Writes a fixed header.
///
/// # Panics
/// If `buf` is shorter than 40 bytes.
pub fn emit(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: u16,
    hop_limit: u8,
) {
    let b = &mut buf[..HEADER_LEN];
    b.fill(0);
    b[field::VERSION] = 0x60;
    b[field::PAYLOAD_LEN].copy_from_slice(&payload_len.to_be_bytes());
    b[field::NEXT_HEADER] = next_header;
    b[field::HOP_LIMIT] = hop_limit;
    b[field::SRC].copy_from_slice(&src.octets());
    b[field::DST].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_read() {
        let mut buf = [0u8; 48];
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00::2".parse().unwrap();
        emit(&mut buf, src, dst, 17, 8, 64);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_addr(), src);
        assert_eq!(p.dst_addr(), dst);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.payload().len(), 8);
        assert_eq!(
            Packet::new_checked(&buf[..47]).unwrap_err(),
            WireError::Truncated
        );
        buf[0] = 0x40;
        assert_eq!(
            Packet::new_checked(&buf[..]).unwrap_err(),
            WireError::Malformed
        );
    }
}
