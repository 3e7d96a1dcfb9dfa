//! The neighbor table of the router: IP → MAC (ARP for IPv4, ND for IPv6), learned from the
//! requests and replies that reach the router, with rate-limited solicitations.
//!
//! Sans-IO like the rest of the crate: the table says *when* to solicit; the pipeline turns
//! that into a [`Solicitation`] and the dataplane builds and sends the frame.

use core::net::IpAddr;
use std::collections::HashMap;

use crate::port::PortId;
use crate::wire::EthernetAddress;

/// An entry older than this is re-confirmed (a solicitation is sent while it is still used).
pub const REFRESH_NS: u64 = 60 * 1_000_000_000;
/// An entry not confirmed for this long is forgotten.
pub const MAX_AGE_NS: u64 = 300 * 1_000_000_000;
/// At most one solicitation per address per this interval.
pub const SOLICIT_INTERVAL_NS: u64 = 1_000_000_000;
/// Most entries.
pub const CAPACITY: usize = 16384;

/// A resolved neighbor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    /// Its MAC address.
    pub mac: EthernetAddress,
    /// The port it answered on.
    pub port: PortId,
    /// The internal VLAN it lives in.
    pub vlan: u16,
    /// When it was last confirmed.
    pub updated: u64,
}

/// A request to resolve `target`, to be sent by the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicitation {
    /// The address to resolve.
    pub target: IpAddr,
    /// The router's address on that network (the request's sender).
    pub source: IpAddr,
    /// The router interface's MAC.
    pub source_mac: EthernetAddress,
    /// The internal VLAN to send in.
    pub vlan: u16,
    /// The one port to send on, or `None` to flood the VLAN.
    pub port: Option<PortId>,
}

impl Solicitation {
    /// Writes the request frame (an untagged ARP request, or an IPv6 neighbor solicitation
    /// to the target's solicited-node group) at the start of `buf`; returns its length.
    ///
    /// # Panics
    /// If `buf` is shorter than 86 bytes, or the source and target families differ.
    pub fn build(&self, buf: &mut [u8]) -> usize {
        use crate::wire::ipv4::Protocol;
        use crate::wire::{EtherType, arp, checksum, ipv6, l4};

        let src = self.source_mac.0;
        match (self.source, self.target) {
            (IpAddr::V4(source), IpAddr::V4(target)) => {
                let frame = &mut buf[..60];
                frame.fill(0);
                frame[0..6].copy_from_slice(&EthernetAddress::BROADCAST.0);
                frame[6..12].copy_from_slice(&src);
                frame[12..14].copy_from_slice(&EtherType::ARP.to_be_bytes());
                let unknown = EthernetAddress([0; 6]);
                arp::emit(
                    &mut frame[14..],
                    arp::OP_REQUEST,
                    self.source_mac,
                    source,
                    unknown,
                    target,
                );
                60
            }
            (IpAddr::V6(source), IpAddr::V6(target)) => {
                const BODY: usize = 32;
                let t = target.octets();
                let group = core::net::Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | u16::from(t[13]),
                    u16::from_be_bytes([t[14], t[15]]),
                );
                let frame = &mut buf[..14 + ipv6::HEADER_LEN + BODY];
                frame[0..6].copy_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
                frame[6..12].copy_from_slice(&src);
                frame[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
                ipv6::emit(
                    &mut frame[14..],
                    source,
                    group,
                    Protocol::ICMPV6,
                    BODY as u16,
                    255,
                );
                let body = &mut frame[14 + ipv6::HEADER_LEN..];
                body.fill(0);
                body[0] = l4::ICMPV6_NEIGHBOR_SOLICIT;
                body[8..24].copy_from_slice(&t);
                body[24] = 1; // source link-layer address
                body[25] = 1;
                body[26..32].copy_from_slice(&src);
                let pseudo =
                    checksum::pseudo_header_v6(source, group, Protocol::ICMPV6, BODY as u32);
                checksum::fill(body, pseudo, 2, false);
                14 + ipv6::HEADER_LEN + BODY
            }
            _ => panic!("solicitation mixes IPv4 and IPv6"),
        }
    }
}

/// IP → neighbor, with solicitation bookkeeping.
#[derive(Debug, Clone)]
pub struct NeighborTable {
    entries: HashMap<IpAddr, Neighbor, ahash::RandomState>,
    solicited: HashMap<IpAddr, u64, ahash::RandomState>,
}

impl Default for NeighborTable {
    fn default() -> Self {
        let seeds = || ahash::RandomState::with_seeds(7, 8, 9, 10);
        NeighborTable {
            entries: HashMap::with_hasher(seeds()),
            solicited: HashMap::with_hasher(seeds()),
        }
    }
}

impl NeighborTable {
    /// The entry for `ip`, if resolved.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Neighbor> {
        self.entries.get(&ip)
    }

    /// Records that `ip` is at `mac` on `port`; returns whether the mapping changed (new, or
    /// another MAC or port).
    pub fn learn(
        &mut self,
        ip: IpAddr,
        mac: EthernetAddress,
        port: PortId,
        vlan: u16,
        now: u64,
    ) -> bool {
        self.solicited.remove(&ip);
        if let Some(e) = self.entries.get_mut(&ip) {
            let changed = e.mac != mac || e.port != port || e.vlan != vlan;
            *e = Neighbor {
                mac,
                port,
                vlan,
                updated: now.max(e.updated),
            };
            return changed;
        }
        if self.entries.len() >= CAPACITY {
            // Full: forget the stalest entry (rare; a full table is an attack or a mistake).
            if let Some(old) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.updated)
                .map(|(ip, _)| *ip)
            {
                self.entries.remove(&old);
            }
        }
        self.entries.insert(
            ip,
            Neighbor {
                mac,
                port,
                vlan,
                updated: now,
            },
        );
        true
    }

    /// Whether a solicitation for `ip` should go out now (none sent in the last
    /// [`SOLICIT_INTERVAL_NS`]); if so, records it as sent.
    pub fn should_solicit(&mut self, ip: IpAddr, now: u64) -> bool {
        match self.solicited.get(&ip) {
            Some(&at) if now.saturating_sub(at) < SOLICIT_INTERVAL_NS => false,
            _ => {
                if self.solicited.len() >= CAPACITY {
                    self.solicited.clear();
                }
                self.solicited.insert(ip, now);
                true
            }
        }
    }

    /// Forgets entries not confirmed for [`MAX_AGE_NS`]; returns the addresses forgotten.
    pub fn expire(&mut self, now: u64) -> Vec<IpAddr> {
        let old: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.updated) >= MAX_AGE_NS)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &old {
            self.entries.remove(ip);
        }
        self.solicited
            .retain(|_, at| now.saturating_sub(*at) < SOLICIT_INTERVAL_NS * 10);
        old
    }

    /// Forgets everything learned on `port`; returns the addresses forgotten.
    pub fn flush_port(&mut self, port: PortId) -> Vec<IpAddr> {
        let gone: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.port == port)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &gone {
            self.entries.remove(ip);
        }
        gone
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Neighbor)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn learn_lookup_change_expire() {
        let mut t = NeighborTable::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let m1 = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let m2 = EthernetAddress([2, 0, 0, 0, 0, 2]);
        assert!(t.learn(ip, m1, 1, 0, 0));
        assert!(!t.learn(ip, m1, 1, 0, S));
        assert!(t.learn(ip, m2, 1, 0, 2 * S));
        assert_eq!(t.lookup(ip).unwrap().mac, m2);
        assert!(t.expire(2 * S + MAX_AGE_NS - 1).is_empty());
        assert_eq!(t.expire(2 * S + MAX_AGE_NS), vec![ip]);
        assert!(t.lookup(ip).is_none());
    }

    #[test]
    fn builds_arp_request_and_neighbor_solicitation() {
        use crate::key::FlowKey;
        use crate::wire::EtherType;

        let mac = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);
        let mut buf = [0u8; 128];
        let sol = Solicitation {
            target: "10.1.0.1".parse().unwrap(),
            source: "10.1.0.254".parse().unwrap(),
            source_mac: mac,
            vlan: 0,
            port: Some(1),
        };
        let n = sol.build(&mut buf);
        let (key, _) = FlowKey::extract(&buf[..n], 1).unwrap();
        assert_eq!(key.dl_type, EtherType::ARP);
        assert_eq!(key.nw_proto, 1);
        assert_eq!(key.nw_dst, 0x0a01_0001);
        assert!(EthernetAddress::from_u64(key.dl_dst).is_broadcast());

        let sol6 = Solicitation {
            target: "fd00::1:2:3".parse().unwrap(),
            source: "fd00::fe".parse().unwrap(),
            ..sol
        };
        let n = sol6.build(&mut buf);
        assert_eq!(n, 86);
        let (key, layout) = FlowKey::extract(&buf[..n], 1).unwrap();
        assert_eq!(key.nw_proto, 58);
        assert_eq!(key.tp_src, 135);
        assert_eq!(&buf[0..6], &[0x33, 0x33, 0xff, 0x02, 0x00, 0x03]);
        let l4 = usize::from(layout.l4_offset);
        let pseudo = crate::wire::checksum::pseudo_header_v6(
            "fd00::fe".parse().unwrap(),
            "ff02::1:ff02:3".parse().unwrap(),
            58,
            32,
        );
        assert!(crate::wire::checksum::verify(&buf[l4..n], pseudo));
    }

    #[test]
    fn solicitations_are_rate_limited() {
        let mut t = NeighborTable::default();
        let ip: IpAddr = "fd00::9".parse().unwrap();
        assert!(t.should_solicit(ip, 0));
        assert!(!t.should_solicit(ip, S / 2));
        assert!(t.should_solicit(ip, S));
        t.learn(ip, EthernetAddress([2, 0, 0, 0, 0, 9]), 3, 0, S);
        assert!(
            t.should_solicit(ip, S + 1),
            "learning clears the pending record"
        );
        assert_eq!(t.flush_port(3), vec![ip]);
    }
}
