//! The few L4 fields xvs reads: TCP and UDP ports, ICMP type and code, checksum offsets.

use super::ipv4::Protocol;
use super::{Field, WireError, get_u16, set_u16};

mod field {
    use super::Field;
    pub(super) const SRC_PORT: Field = 0..2;
    pub(super) const DST_PORT: Field = 2..4;
    pub(super) const TCP_FLAGS: Field = 12..14;
    pub(super) const UDP_CHECKSUM: usize = 6;
    pub(super) const TCP_CHECKSUM: usize = 16;
    pub(super) const ICMP_CHECKSUM: usize = 2;
}

/// Minimum UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
/// Minimum TCP header length.
pub const TCP_HEADER_LEN: usize = 20;
/// Minimum ICMP header length.
pub const ICMP_HEADER_LEN: usize = 8;

/// ICMPv4 echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMPv4 echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMPv6 echo request.
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 neighbor solicitation.
pub const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 neighbor advertisement.
pub const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;

/// The minimum header length of an L4 protocol, if xvs reads it.
pub fn header_len(protocol: u8) -> Option<usize> {
    match protocol {
        Protocol::TCP => Some(TCP_HEADER_LEN),
        Protocol::UDP => Some(UDP_HEADER_LEN),
        Protocol::ICMP | Protocol::ICMPV6 => Some(ICMP_HEADER_LEN),
        _ => None,
    }
}

/// Offset of the checksum field in an L4 header.
pub fn checksum_offset(protocol: u8) -> Option<usize> {
    match protocol {
        Protocol::TCP => Some(field::TCP_CHECKSUM),
        Protocol::UDP => Some(field::UDP_CHECKSUM),
        Protocol::ICMP | Protocol::ICMPV6 => Some(field::ICMP_CHECKSUM),
        _ => None,
    }
}

/// A view of the first bytes of a TCP, UDP or ICMP header.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
    protocol: u8,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps the L4 bytes of a segment of `protocol` after checking that its minimum header
    /// fits. After it succeeds no accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`], or [`WireError::Malformed`] for a protocol xvs does not read.
    pub fn new_checked(buffer: T, protocol: u8) -> Result<Header<T>, WireError> {
        let need = header_len(protocol).ok_or(WireError::Malformed)?;
        if buffer.as_ref().len() < need {
            return Err(WireError::Truncated);
        }
        Ok(Header { buffer, protocol })
    }

    /// TCP/UDP source port, or the ICMP type.
    pub fn src_port(&self) -> u16 {
        match self.protocol {
            Protocol::ICMP | Protocol::ICMPV6 => u16::from(self.buffer.as_ref()[0]),
            _ => get_u16(self.buffer.as_ref(), field::SRC_PORT),
        }
    }

    /// The TCP flags (12 bits: FIN 0x001 … NS 0x100); 0 for other protocols.
    pub fn tcp_flags(&self) -> u16 {
        match self.protocol {
            Protocol::TCP => get_u16(self.buffer.as_ref(), field::TCP_FLAGS) & 0x0fff,
            _ => 0,
        }
    }

    /// TCP/UDP destination port, or the ICMP code.
    pub fn dst_port(&self) -> u16 {
        match self.protocol {
            Protocol::ICMP | Protocol::ICMPV6 => u16::from(self.buffer.as_ref()[1]),
            _ => get_u16(self.buffer.as_ref(), field::DST_PORT),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Sets the TCP/UDP ports (not for ICMP; no checksum update).
    pub fn set_ports(&mut self, src: u16, dst: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, src);
        set_u16(self.buffer.as_mut(), field::DST_PORT, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_icmp() {
        let udp = [0x03, 0xe8, 0x07, 0xd0, 0, 8, 0, 0];
        let h = Header::new_checked(&udp[..], Protocol::UDP).unwrap();
        assert_eq!((h.src_port(), h.dst_port()), (1000, 2000));
        assert_eq!(h.tcp_flags(), 0);
        let mut tcp = [0u8; 20];
        tcp[12] = 0x51; // data offset 5, NS
        tcp[13] = 0x12; // SYN|ACK
        let h = Header::new_checked(&tcp[..], Protocol::TCP).unwrap();
        assert_eq!(h.tcp_flags(), 0x112);
        let icmp = [8u8, 0, 0, 0, 0, 1, 0, 1];
        let h = Header::new_checked(&icmp[..], Protocol::ICMP).unwrap();
        assert_eq!((h.src_port(), h.dst_port()), (8, 0));
        assert_eq!(
            Header::new_checked(&udp[..7], Protocol::UDP).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Header::new_checked(&udp[..], 47).unwrap_err(),
            WireError::Malformed
        );
    }
}
