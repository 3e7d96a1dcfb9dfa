//! The router stage: answers for the router's own addresses (ARP, ND, ping), forwarding by
//! longest prefix match to a resolved next hop, and the neighbor table kept from ARP and ND.

use core::net::IpAddr;

use super::coherence::{Resolution, bucket, ip_bucket};
use super::{Event, Pipeline};
use crate::action::{Decision, DropReason, Step};
use crate::config::Config;
use crate::key::FlowKey;
use crate::neighbor::{self, Solicitation};
use crate::port::{EgressTag, PortId};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress, arp, l4};

fn ipv4(word: u128) -> IpAddr {
    IpAddr::V4((word as u32).into())
}

fn src_ip(key: &FlowKey) -> Option<IpAddr> {
    match key.dl_type {
        EtherType::IPV4 | EtherType::ARP => Some(ipv4(key.nw_src)),
        EtherType::IPV6 => Some(IpAddr::V6(key.nw_src.into())),
        _ => None,
    }
}

impl Pipeline {
    /// The `route` action: the packet enters the L3 pipeline whatever its destination MAC.
    pub(super) fn route_action(
        &mut self,
        config: &Config,
        key: &FlowKey,
        now: u64,
    ) -> (Decision, Resolution) {
        let resolution = Resolution::default();
        let Some(vlan) = config
            .port(key.in_port)
            .and_then(|p| p.vlan.ingress(key.vlan_id().filter(|&v| v != 0)))
        else {
            return (Decision::drop(DropReason::VlanFiltered), resolution);
        };
        let iface = config
            .interfaces()
            .iter()
            .position(|i| i.serves(vlan, key.in_port));
        self.l3(config, key, vlan, iface, now, resolution)
    }

    /// The L3 pipeline: traffic for the router itself (ARP, ND, ping), then forwarding by
    /// longest prefix match to a resolved next hop, rewriting the MACs and decrementing the
    /// TTL. `iface` is the router interface the packet was addressed to, if any.
    pub(super) fn l3(
        &mut self,
        config: &Config,
        key: &FlowKey,
        vlan: u16,
        iface: Option<usize>,
        now: u64,
        mut resolution: Resolution,
    ) -> (Decision, Resolution) {
        let router_mac = iface.map(|i| config.interfaces()[i].mac);
        match key.dl_type {
            EtherType::ARP => {
                resolution.uncacheable = true;
                let op = u16::from(key.nw_proto);
                let target = ipv4(key.nw_dst);
                if op == arp::OP_REQUEST
                    && let (Some(mac), Some(_)) =
                        (router_mac, config.router_by_ip(vlan, target, key.in_port))
                {
                    self.learn_neighbor_from(key, vlan, now);
                    return (
                        Self::reply(config, key, vlan, Step::ArpReply(mac)),
                        resolution,
                    );
                }
                if op == arp::OP_REPLY && config.router_by_ip(vlan, target, key.in_port).is_some() {
                    self.learn_neighbor_from(key, vlan, now);
                }
                return (Decision::drop(DropReason::ToRouter), resolution);
            }
            EtherType::IPV4 | EtherType::IPV6 => {}
            // Dropped, but the source was learned: the decision keeps depending on it.
            _ => return (Decision::drop(DropReason::NoRoute), resolution),
        }
        let Some(dst) = key.ip_dst() else {
            return (Decision::drop(DropReason::NoRoute), resolution);
        };
        if config.is_router_ip(dst) {
            let Some(mac) = router_mac else {
                return (Decision::drop(DropReason::ToRouter), resolution);
            };
            let icmp_type = key.tp_src as u8;
            let echo = match dst {
                IpAddr::V4(_) => {
                    key.nw_proto == Protocol::ICMP && icmp_type == l4::ICMP_ECHO_REQUEST
                }
                IpAddr::V6(_) => {
                    key.nw_proto == Protocol::ICMPV6 && icmp_type == l4::ICMPV6_ECHO_REQUEST
                }
            };
            if echo {
                return (
                    Self::reply(config, key, vlan, Step::EchoReply(mac)),
                    resolution,
                );
            }
            if key.nw_proto == Protocol::ICMPV6 {
                resolution.uncacheable = true;
                if icmp_type == l4::ICMPV6_NEIGHBOR_SOLICIT {
                    self.learn_neighbor_from(key, vlan, now);
                    return (
                        Self::reply(config, key, vlan, Step::NeighborAdvert(mac)),
                        resolution,
                    );
                }
                if icmp_type == l4::ICMPV6_NEIGHBOR_ADVERT {
                    self.learn_neighbor_from(key, vlan, now);
                }
            }
            return (Decision::drop(DropReason::ToRouter), resolution);
        }
        if key.dl_type == EtherType::IPV6
            && key.nw_proto == Protocol::ICMPV6
            && key.tp_src == u16::from(l4::ICMPV6_NEIGHBOR_ADVERT)
        {
            // An advertisement answering our solicitation, sent to a router MAC.
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            return (Decision::drop(DropReason::ToRouter), resolution);
        }
        if key.nw_ttl <= 1 {
            return (Decision::drop(DropReason::TtlExceeded), resolution);
        }
        let Some((out_index, next_hop)) = config.route(dst) else {
            return (Decision::drop(DropReason::NoRoute), resolution);
        };
        let out = &config.interfaces()[out_index];
        resolution.depend(ip_bucket(next_hop));
        let Some(neighbor) = self.neighbors.lookup(next_hop).copied() else {
            // Every packet asks again (rate-limited) until the neighbor answers.
            resolution.uncacheable = true;
            self.solicit(config, out_index, next_hop, now);
            return (Decision::drop(DropReason::NoNeighbor), resolution);
        };
        let out_port = match out.port() {
            Some(p) => p,
            None => {
                let mac = neighbor.mac.to_u64();
                resolution.depend(bucket(out.vlan, mac));
                self.mac_table
                    .lookup(out.vlan, mac)
                    .unwrap_or(neighbor.port)
            }
        };
        let Some(tag) = config.port(out_port).and_then(|p| p.vlan.egress(out.vlan)) else {
            return (Decision::drop(DropReason::NoRoute), resolution);
        };
        let steps = [
            Step::SetEthSrc(out.mac),
            Step::SetEthDst(neighbor.mac),
            Step::DecTtl,
            Step::Output {
                port: out_port,
                tag: Some(tag),
            },
        ];
        (Decision::from_steps(&steps), resolution)
    }

    /// ARP requests and neighbor solicitations for a router address arrive broadcast or
    /// multicast: answer them instead of flooding.
    pub(super) fn answer_multicast(
        &mut self,
        config: &Config,
        key: &FlowKey,
        vlan: u16,
        now: u64,
        resolution: &mut Resolution,
    ) -> Option<Decision> {
        if key.dl_type == EtherType::ARP && u16::from(key.nw_proto) == arp::OP_REQUEST {
            let iface = config.router_by_ip(vlan, ipv4(key.nw_dst), key.in_port)?;
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            let mac = config.interfaces()[iface].mac;
            return Some(Self::reply(config, key, vlan, Step::ArpReply(mac)));
        }
        if key.dl_type == EtherType::IPV6
            && key.nw_proto == Protocol::ICMPV6
            && key.tp_src == u16::from(l4::ICMPV6_NEIGHBOR_SOLICIT)
        {
            // The solicited-node group carries the low 24 bits of the target.
            let low = key.nw_dst & 0x00ff_ffff;
            let iface = config.interfaces().iter().find(|i| {
                i.serves(vlan, key.in_port)
                    && i.addrs.iter().any(|(a, _)| match a {
                        IpAddr::V6(a) => u128::from(*a) & 0x00ff_ffff == low,
                        IpAddr::V4(_) => false,
                    })
            })?;
            resolution.uncacheable = true;
            self.learn_neighbor_from(key, vlan, now);
            return Some(Self::reply(
                config,
                key,
                vlan,
                Step::NeighborAdvert(iface.mac),
            ));
        }
        None
    }

    /// A reply that goes back out of the ingress port: `edit` then output.
    fn reply(config: &Config, key: &FlowKey, vlan: u16, edit: Step) -> Decision {
        let tag = config
            .port(key.in_port)
            .and_then(|p| p.vlan.egress(vlan))
            .unwrap_or(EgressTag::Untagged);
        Decision::from_steps(&[
            edit,
            Step::Output {
                port: key.in_port,
                tag: Some(tag),
            },
        ])
    }

    /// Learns the sender of an ARP or ND packet as a neighbor.
    fn learn_neighbor_from(&mut self, key: &FlowKey, vlan: u16, now: u64) {
        let Some(ip) = src_ip(key) else { return };
        if ip.is_unspecified() {
            return;
        }
        let mac = EthernetAddress::from_u64(key.dl_src);
        self.learn_neighbor(ip, mac, key.in_port, vlan, now, true);
    }

    pub(super) fn learn_neighbor(
        &mut self,
        ip: IpAddr,
        mac: EthernetAddress,
        port: PortId,
        vlan: u16,
        now: u64,
        local: bool,
    ) {
        if self.neighbors.learn(ip, mac, port, vlan, now) {
            self.bump_bucket(ip_bucket(ip));
        }
        if local {
            self.events.push(Event::Neighbor {
                ip,
                mac,
                port,
                vlan,
                seen: now,
            });
        }
    }

    /// Asks (rate-limited) for `target` to be resolved on router interface `index`.
    fn solicit(&mut self, config: &Config, index: usize, target: IpAddr, now: u64) {
        let iface = &config.interfaces()[index];
        let Some(source) = iface.source_for(target) else {
            return;
        };
        if self.neighbors.should_solicit(target, now) {
            self.stats.solicitations += 1;
            self.solicitations.push(Solicitation {
                target,
                source,
                source_mac: iface.mac,
                vlan: iface.vlan,
                port: iface.port(),
            });
        }
    }

    /// The solicitations to send (ARP requests, neighbor solicitations), for the dataplane.
    pub fn take_solicitations(&mut self) -> std::vec::Drain<'_, Solicitation> {
        self.solicitations.drain(..)
    }

    /// Ages the neighbor table, and solicits again the directly reachable neighbors that are
    /// due for re-confirmation.
    pub(super) fn expire_neighbors(&mut self, now: u64) {
        for ip in self.neighbors.expire(now) {
            self.bump_bucket(ip_bucket(ip));
        }
        let stale: Vec<IpAddr> = self
            .neighbors
            .iter()
            .filter(|(_, n)| now.saturating_sub(n.updated) >= neighbor::REFRESH_NS)
            .map(|(ip, _)| *ip)
            .collect();
        let config = self.config.clone();
        for ip in stale {
            if let Some((index, next_hop)) = config.route(ip)
                && next_hop == ip
            {
                self.solicit(&config, index, ip, now);
            }
        }
    }
}
