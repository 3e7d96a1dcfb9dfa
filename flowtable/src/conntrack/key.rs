//! The identity of a tracked connection: zone and the original direction's 5-tuple.

use core::hash::Hash;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A connection as its first (original-direction) packet saw it.
///
/// TCP and UDP (and other protocols with ports) put their ports in `src_port`/`dst_port`.
/// ICMP echo puts the request's and the reply's type there (`src_port` = the type this
/// direction sends, so a reply's tuple is the request's reversed, as in OVS's key) and the echo
/// identifier in `icmp_id`; every other ICMP type, and protocols without ports, have zero ports.
/// `icmp_id` is zero except for ICMP echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Conntrack zone: the same tuple in two zones is two connections.
    pub zone: u16,
    /// IPv6 (else IPv4, with the address in the low 32 bits).
    pub ipv6: bool,
    /// IP protocol.
    pub proto: u8,
    /// Source address of the original direction.
    pub src: u128,
    /// Destination address of the original direction.
    pub dst: u128,
    /// Source port of the original direction (ICMP echo: the request type).
    pub src_port: u16,
    /// Destination port of the original direction (ICMP echo: the reply type).
    pub dst_port: u16,
    /// ICMP echo identifier; 0 for everything else.
    pub icmp_id: u16,
}

/// Fixed seeds: the hash must be the same in every process and every run (sans-IO, deterministic).
const HASH_SEEDS: (u64, u64, u64, u64) = (0x0c02_2ec7, 0x7ac4, 0x0005_eed5, 0x2);

impl ConnKey {
    /// The original direction's source address.
    pub fn src_ip(&self) -> IpAddr {
        self.ip(self.src)
    }

    /// The original direction's destination address.
    pub fn dst_ip(&self) -> IpAddr {
        self.ip(self.dst)
    }

    fn ip(&self, bits: u128) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        }
    }

    /// The key of the same connection seen from the other direction (addresses and ports
    /// swapped; zone, protocol and ICMP id kept).
    pub fn reversed(&self) -> ConnKey {
        ConnKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// A deterministic hash (fixed seeds) that is symmetric: `k.hash64() ==
    /// k.reversed().hash64()`, so both directions' packets of one connection hash alike
    /// (usable to pick a worker or a shard).
    pub fn hash64(&self) -> u64 {
        let a = (self.src, self.src_port);
        let b = (self.dst, self.dst_port);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (k0, k1, k2, k3) = HASH_SEEDS;
        let state = ahash::RandomState::with_seeds(k0, k1, k2, k3);
        state.hash_one(SymmetricKey {
            zone: self.zone,
            ipv6: self.ipv6,
            proto: self.proto,
            icmp_id: self.icmp_id,
            lo,
            hi,
        })
    }
}

#[derive(Hash)]
struct SymmetricKey {
    zone: u16,
    ipv6: bool,
    proto: u8,
    icmp_id: u16,
    lo: (u128, u16),
    hi: (u128, u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ConnKey {
        ConnKey {
            zone: 3,
            ipv6: false,
            proto: 6,
            src: 0x0a00_0001,
            dst: 0x0a00_0002,
            src_port: 40000,
            dst_port: 80,
            icmp_id: 0,
        }
    }

    #[test]
    fn hash_is_symmetric_and_fixed() {
        let k = key();
        assert_eq!(k.hash64(), k.reversed().hash64());
        assert_eq!(k.hash64(), key().hash64());
        assert_eq!(k.reversed().reversed(), k);
        let other_zone = ConnKey { zone: 4, ..k };
        assert_ne!(k.hash64(), other_zone.hash64());
        let other_port = ConnKey {
            src_port: 40001,
            ..k
        };
        assert_ne!(k.hash64(), other_port.hash64());
    }
}
