//! ARP for IPv4 over Ethernet.

use core::net::Ipv4Addr;

use super::{EtherType, EthernetAddress, Field, WireError, get_u16, get_u32, set_u16};

mod field {
    use super::Field;
    pub(super) const HTYPE: Field = 0..2;
    pub(super) const PTYPE: Field = 2..4;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: Field = 6..8;
    pub(super) const SHA: Field = 8..14;
    pub(super) const SPA: Field = 14..18;
    pub(super) const THA: Field = 18..24;
    pub(super) const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP request.
pub const OP_REQUEST: u16 = 1;
/// ARP reply.
pub const OP_REPLY: u16 = 2;

/// A read/write view of an Ethernet/IPv4 ARP packet.
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

    /// Checks the length and that this is Ethernet (1) / IPv4 with 6- and 4-byte addresses.
    /// After it succeeds no accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::Malformed`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, field::HTYPE) != 1
            || get_u16(b, field::PTYPE) != EtherType::IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    /// Operation (1 request, 2 reply).
    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_hw(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address.
    pub fn target_hw(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_u32(self.buffer.as_ref(), field::TPA))
    }
}

/// Writes an Ethernet/IPv4 ARP packet.
///
/// # Panics
/// If `buf` is shorter than 28 bytes.
pub fn emit(
    buf: &mut [u8],
    operation: u16,
    sender_hw: EthernetAddress,
    sender_ip: Ipv4Addr,
    target_hw: EthernetAddress,
    target_ip: Ipv4Addr,
) {
    let b = &mut buf[..PACKET_LEN];
    set_u16(b, field::HTYPE, 1);
    set_u16(b, field::PTYPE, EtherType::IPV4);
    b[field::HLEN] = 6;
    b[field::PLEN] = 4;
    set_u16(b, field::OPER, operation);
    b[field::SHA].copy_from_slice(&sender_hw.0);
    b[field::SPA].copy_from_slice(&sender_ip.octets());
    b[field::THA].copy_from_slice(&target_hw.0);
    b[field::TPA].copy_from_slice(&target_ip.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    static REQUEST: [u8; 28] = [
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn reads_request() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_hw(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            Packet::new_checked(&REQUEST[..27]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = REQUEST;
        bad[5] = 16;
        assert_eq!(
            Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn emit_roundtrip() {
        let mut buf = [0u8; 28];
        let mac = EthernetAddress([2, 0, 0, 0, 0, 7]);
        emit(
            &mut buf,
            OP_REPLY,
            mac,
            Ipv4Addr::new(10, 1, 0, 254),
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            Ipv4Addr::new(10, 1, 0, 1),
        );
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.operation(), OP_REPLY);
        assert_eq!(p.sender_hw(), mac);
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 1, 0, 1));
    }
}
