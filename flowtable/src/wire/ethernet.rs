//! Ethernet II frames and 802.1Q tags.

use core::fmt;
use core::str::FromStr;

use super::{Field, WireError, get_u16, set_u16};

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// The address from a byte slice of length 6.
    ///
    /// # Panics
    /// If `bytes` is not 6 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(bytes);
        EthernetAddress(a)
    }

    /// The address as the low 48 bits of a `u64` (big-endian order).
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address from the low 48 bits of a `u64`.
    pub fn from_u64(value: u64) -> EthernetAddress {
        let b = value.to_be_bytes();
        EthernetAddress([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Whether this is ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast, including broadcast).
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    /// Whether a host may have this address: unicast and not 00:00:00:00:00:00 (the Linux
    /// kernel's `is_valid_ether_addr`). Only such an address may be a frame's source.
    pub fn is_valid_unicast(self) -> bool {
        self.is_unicast() && self.0 != [0; 6]
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEthernetAddress;

impl fmt::Display for BadEthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address (want six hex bytes like 02:00:00:00:00:01)")
    }
}

impl core::error::Error for BadEthernetAddress {}

impl FromStr for EthernetAddress {
    type Err = BadEthernetAddress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(BadEthernetAddress)?;
            if part.is_empty() || part.len() > 2 {
                return Err(BadEthernetAddress);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadEthernetAddress)?;
        }
        if parts.next().is_some() {
            return Err(BadEthernetAddress);
        }
        Ok(EthernetAddress(out))
    }
}

/// EtherType values xvs looks at.
#[derive(Debug)]
pub struct EtherType;

impl EtherType {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag.
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use super::Field;
    pub(super) const DESTINATION: Field = 0..6;
    pub(super) const SOURCE: Field = 6..12;
    pub(super) const ETHERTYPE: Field = 12..14;
    pub(super) const TCI: Field = 14..16;
    pub(super) const INNER_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for a buffer shorter than the header (including its VLAN tag
    /// when the EtherType says there is one).
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header, and an 802.1Q tag if there is one, fit in the buffer. After it
    /// succeeds no accessor panics.
    ///
    /// # Errors
    /// [`WireError::Truncated`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.has_vlan_tag() && len < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer EtherType (0x8100 for a tagged frame).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Whether the frame carries an 802.1Q tag.
    pub fn has_vlan_tag(&self) -> bool {
        self.ethertype() == EtherType::VLAN
    }

    /// The VLAN id of the tag, if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.has_vlan_tag()
            .then(|| get_u16(self.buffer.as_ref(), field::TCI) & 0x0fff)
    }

    /// The tag control information (priority, DEI, VID), if tagged.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.has_vlan_tag()
            .then(|| get_u16(self.buffer.as_ref(), field::TCI))
    }

    /// The EtherType of the payload, behind a tag if there is one.
    pub fn payload_ethertype(&self) -> u16 {
        if self.has_vlan_tag() {
            get_u16(self.buffer.as_ref(), field::INNER_ETHERTYPE)
        } else {
            self.ethertype()
        }
    }

    /// Length of the header including a tag.
    pub fn header_len(&self) -> usize {
        if self.has_vlan_tag() {
            HEADER_LEN + VLAN_TAG_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload after the header (and tag).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the outer EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Sets the VLAN id of an existing tag, keeping priority and DEI. Does nothing on an
    /// untagged frame.
    pub fn set_vlan_id(&mut self, vid: u16) {
        if let Some(tci) = self.vlan_tci() {
            set_u16(
                self.buffer.as_mut(),
                field::TCI,
                (tci & 0xf000) | (vid & 0x0fff),
            );
        }
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static UNTAGGED: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x02, // dst
        0x02, 0, 0, 0, 0, 0x01, // src
        0x08, 0x00, // IPv4
        0xde, 0xad, 0xbe, 0xef,
    ];

    static TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, //
        0x02, 0, 0, 0, 0, 0x01, //
        0x81, 0x00, 0x20, 0x0a, // PCP 1, VID 10
        0x08, 0x06, // ARP
        0xaa, 0xbb,
    ];

    #[test]
    fn reads_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr().to_string(), "02:00:00:00:00:02");
        assert_eq!(f.src_addr(), "02:00:00:00:00:01".parse().unwrap());
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload(), &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn reads_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert_eq!(f.vlan_id(), Some(10));
        assert_eq!(f.payload_ethertype(), EtherType::ARP);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn rejects_short() {
        assert_eq!(
            Frame::new_checked(&UNTAGGED[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Frame::new_checked(&TAGGED[..16]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn writes() {
        let mut bytes = TAGGED;
        let mut f = Frame::new_checked(&mut bytes[..]).unwrap();
        f.set_vlan_id(20);
        f.set_src_addr(EthernetAddress([2, 0, 0, 0, 0, 9]));
        assert_eq!(f.vlan_tci(), Some(0x2014));
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 9]));
    }

    #[test]
    fn mac_parse_and_u64() {
        let a: EthernetAddress = "0a:1b:2c:3d:4e:5f".parse().unwrap();
        assert_eq!(EthernetAddress::from_u64(a.to_u64()), a);
        assert!("0a:1b:2c:3d:4e".parse::<EthernetAddress>().is_err());
        assert!("0a:1b:2c:3d:4e:5f:00".parse::<EthernetAddress>().is_err());
        assert!("zz:1b:2c:3d:4e:5f".parse::<EthernetAddress>().is_err());
        assert!(a.is_unicast());
        assert!(a.is_valid_unicast());
        assert!(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]).is_valid_unicast());
        assert!(!EthernetAddress::BROADCAST.is_valid_unicast());
        assert!(!EthernetAddress::default().is_valid_unicast());
    }
}
