//! The generated worlds of the differential tests: ports (hook, VLAN mode, veth or not),
//! hosts on them, router interfaces, a static route and rules; and the frames hosts send
//! (Ethernet with or without tags, IPv4 TCP/UDP/ICMP/other, IPv6 UDP/TCP, neighbor
//! solicitations and echo requests, ARP, a raw EtherType), well formed or bent.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use flowtable::config::{Binding, untagged_vlan};
use flowtable::flow_spec::parse_flow;
use flowtable::wire::{EthernetAddress, arp, checksum, ipv4, ipv6};
use flowtable::{Config, PortConfig, PortId, VlanMode};
use proptest::prelude::*;

use crate::hook::HookKind;

/// The VLANs of a world.
const VIDS: [u16; 3] = [10, 20, 30];

/// A port: number `index + 1`, interface index `IFINDEX_BASE + number`.
#[derive(Debug, Clone)]
pub(super) struct PortSpec {
    pub(super) hook: HookKind,
    pub(super) vlan: VlanMode,
    /// A veth: its frames may carry checksums left for offload (tc ports are veths).
    pub(super) veth: bool,
    /// An XDP program may redirect to it (it is in the DEVMAP).
    pub(super) target: bool,
}

/// Interface indexes of ports: this plus the port number.
pub(super) const IFINDEX_BASE: u32 = 100;

/// A host: on a port, sending with a tag (or none).
#[derive(Debug, Clone)]
pub(super) struct HostSpec {
    pub(super) port: PortId,
    pub(super) tag: Option<u16>,
}

/// A switch and the hosts around it.
#[derive(Debug, Clone)]
pub(super) struct World {
    pub(super) ports: Vec<PortSpec>,
    pub(super) hosts: Vec<HostSpec>,
    /// Router interfaces: interface `k` has 10.k+1.0.254/24 and fd00:k+1::fe/64.
    pub(super) ifaces: Vec<Binding>,
    /// A route to 192.168.0.0/16 through host 0 (if it has an address on an interface).
    pub(super) route: bool,
    /// Rules, as `add-flow` text.
    pub(super) rules: Vec<String>,
}

/// Where the hosts of a built world are.
#[derive(Debug, Clone)]
pub(super) struct Addressing {
    pub(super) macs: Vec<EthernetAddress>,
    pub(super) ips: Vec<Ipv4Addr>,
    pub(super) ip6s: Vec<Ipv6Addr>,
    /// The router interface each host is on, if any.
    pub(super) iface: Vec<Option<usize>>,
}

pub(super) fn router_mac(k: usize) -> EthernetAddress {
    EthernetAddress([2, 0x72, 0, 0, 0, k as u8 + 1])
}

fn router_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, k as u8 + 1, 0, 254)
}

fn router_ip6(k: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, k as u16 + 1, 0, 0, 0, 0, 0, 0xfe)
}

impl World {
    /// The switch configuration, and where the hosts are.
    pub(super) fn build(&self) -> (Arc<Config>, Addressing) {
        let mut config = Config::default();
        // The loop guard keeps broadcast in userspace (the policy's test covers that), and
        // the worlds' bursts of broadcast at one instant would trip it: off, so that floods
        // to one port are held against the kernel too.
        config.loop_guard_pps = 0;
        for (i, p) in self.ports.iter().enumerate() {
            let id = i as PortId + 1;
            config.set_port(PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 1, id as u8]),
                vlan: p.vlan.clone(),
                security: Default::default(),
            });
        }
        for (k, binding) in self.ifaces.iter().enumerate() {
            let mac = Some(router_mac(k));
            config
                .add_address(*binding, IpAddr::V4(router_ip(k)), 24, mac)
                .expect("an interface");
            config
                .add_address(*binding, IpAddr::V6(router_ip6(k)), 64, mac)
                .expect("an interface");
        }
        let mut addressing = Addressing {
            macs: Vec::new(),
            ips: Vec::new(),
            ip6s: Vec::new(),
            iface: Vec::new(),
        };
        for (i, h) in self.hosts.iter().enumerate() {
            let vlan = self.ports[usize::from(h.port) - 1]
                .vlan
                .ingress(h.tag.filter(|&v| v != 0))
                .expect("hosts send what their port takes");
            let iface = config
                .interfaces()
                .iter()
                .position(|r| r.serves(vlan, h.port));
            let subnet = iface.map_or(99, |k| k as u8 + 1);
            addressing
                .macs
                .push(EthernetAddress([2, 0, 0, 0, 0, 0x10 + i as u8]));
            addressing
                .ips
                .push(Ipv4Addr::new(10, subnet, 0, 0x10 + i as u8));
            addressing.ip6s.push(Ipv6Addr::new(
                0xfd00,
                u16::from(subnet),
                0,
                0,
                0,
                0,
                0,
                0x10 + i as u16,
            ));
            addressing.iface.push(iface);
        }
        if self.route && addressing.iface[0].is_some() {
            config
                .add_route(
                    IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)),
                    16,
                    IpAddr::V4(addressing.ips[0]),
                )
                .expect("a route");
        }
        for (i, text) in self.rules.iter().enumerate() {
            let spec = parse_flow(text, &|_| None).unwrap_or_else(|e| panic!("{text}: {e}"));
            config.rules.insert(spec.into_rule(i as u32 + 1));
        }
        (Arc::new(config), addressing)
    }

    /// The port and tag a host sends with: its own, or another when a packet says so.
    fn host_port(&self, host: usize) -> &HostSpec {
        &self.hosts[host % self.hosts.len()]
    }
}

fn vlan_mode() -> impl Strategy<Value = VlanMode> {
    prop_oneof![
        3 => Just(VlanMode::All),
        1 => prop::sample::select(VIDS.to_vec()).prop_map(VlanMode::Access),
        2 => (prop::sample::subsequence(VIDS.to_vec(), 1..=3), prop::option::of(prop::sample::select(VIDS.to_vec())))
            .prop_map(|(allowed, native)| VlanMode::Trunk { allowed, native }),
    ]
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (
        any::<bool>(),
        vlan_mode(),
        any::<bool>(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(tc, vlan, veth, target)| PortSpec {
            hook: if tc { HookKind::Tc } else { HookKind::Xdp },
            vlan,
            veth: veth || tc,
            target,
        })
}

/// The tags a port takes from a host: `None` for untagged.
fn accepted_tags(mode: &VlanMode) -> Vec<Option<u16>> {
    match mode {
        VlanMode::All => vec![None, Some(0), Some(10), Some(20)],
        VlanMode::Access(_) => vec![None],
        VlanMode::Trunk { allowed, native } => {
            let mut tags: Vec<Option<u16>> = allowed.iter().map(|&v| Some(v)).collect();
            if native.is_some() {
                tags.push(None);
                tags.push(Some(0));
            }
            tags
        }
    }
}

fn bindings(ports: usize) -> impl Strategy<Value = Vec<Binding>> {
    let binding = prop_oneof![
        prop::sample::select(vec![0, 10, 20]).prop_map(Binding::Vlan),
        (1..=ports as PortId).prop_map(Binding::Port),
    ];
    prop::collection::vec(binding, 0..=2).prop_map(|mut b| {
        b.sort();
        b.dedup();
        b
    })
}

/// Rule templates: `{p}` and `{q}` are ports, `{ip}` and `{mac}` a host's.
const RULES: [&str; 11] = [
    "priority=100,tcp,tp_dst=80,actions=drop",
    "priority=90,udp,tp_dst=53,actions=output:{p}",
    "priority=80,ip,nw_dst={ip},actions=mod_dl_src:02:72:00:00:00:aa,mod_dl_dst:{mac},dec_ttl,output:{p}",
    "priority=70,icmp,actions=normal",
    "priority=60,ip,nw_src=10.0.0.0/8,actions=route",
    "priority=50,udp,actions=push_vlan:30,output:{p}",
    "priority=40,dl_type=0x88b6,actions=output:{p}",
    "priority=30,tcp,tp_src=1001,actions=output:{p},output:{q}",
    "priority=20,tcp,tp_src=1000,actions=mod_vlan_vid:20,output:{p}",
    "priority=10,ip,nw_proto=47,actions=drop",
    "priority=1,actions=normal",
];

fn rules(ports: usize, hosts: usize) -> impl Strategy<Value = Vec<String>> {
    // The drops twice as often: they are the only entries that drop.
    let template = prop::sample::select((0..RULES.len()).chain([0, 9]).collect::<Vec<_>>());
    prop::collection::vec(
        (template, 1..=ports as PortId, 1..=ports as PortId, 0..hosts),
        1..=4,
    )
    .prop_map(|picked| {
        picked
            .into_iter()
            .map(|(r, p, q, h)| {
                RULES[r]
                    .replace("{p}", &p.to_string())
                    .replace("{q}", &q.to_string())
                    // The host's address: its subnet is known once the world is built,
                    // its last byte now.
                    .replace("{ip}", &format!("10.0.0.{}/255.0.0.255", 0x10 + h))
                    .replace("{mac}", &format!("02:00:00:00:00:{:02x}", 0x10 + h))
            })
            .collect()
    })
}

pub(super) fn world() -> impl Strategy<Value = World> {
    (2..=4usize)
        .prop_flat_map(|n| {
            (
                prop::collection::vec(port_spec(), n),
                prop::collection::vec((1..=n as PortId, any::<prop::sample::Index>()), 2..=5),
                bindings(n),
                any::<bool>(),
                prop::bool::weighted(0.5),
            )
        })
        .prop_flat_map(|(ports, host_picks, ifaces, route, with_rules)| {
            let hosts: Vec<HostSpec> = host_picks
                .iter()
                .map(|(port, pick)| {
                    let tags = accepted_tags(&ports[usize::from(*port) - 1].vlan);
                    HostSpec {
                        port: *port,
                        tag: *pick.get(&tags),
                    }
                })
                .collect();
            let n = ports.len();
            let hosts_len = hosts.len();
            let rules = if with_rules {
                rules(n, hosts_len).boxed()
            } else {
                Just(Vec::new()).boxed()
            };
            (Just(ports), Just(hosts), Just(ifaces), Just(route), rules)
        })
        .prop_map(|(ports, hosts, ifaces, route, rules)| World {
            ports,
            hosts,
            ifaces,
            route,
            rules,
        })
}

/// The Ethernet destination of a packet.
#[derive(Debug, Clone, Copy)]
pub(super) enum L2Dst {
    Host(usize),
    Router(usize),
    Broadcast,
    Multicast,
    Unknown,
}

/// The IP destination (ARP: the target) of a packet.
#[derive(Debug, Clone, Copy)]
pub(super) enum L3Dst {
    Host(usize),
    Router(usize),
    /// Behind the static route.
    Far,
    /// Nowhere the router knows.
    Unrouted,
}

/// What a packet is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Udp,
    Tcp,
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    /// IPv4 of another protocol.
    OtherIp(u8),
    Udp6,
    Tcp6,
    /// A neighbor solicitation for the L3 destination (to its solicited-node group, unless
    /// the Ethernet destination is a router's).
    Ns6,
    Echo6,
    ArpRequest,
    ArpReply,
    /// An IEEE local experimental EtherType.
    Raw,
}

/// The tag a packet is sent with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tag {
    /// The host's.
    Home,
    Untagged,
    /// 802.1Q with this VID (0: priority-tagged).
    Vid(u16),
    /// 802.1ad outside, as the host would put it.
    Service(u16),
}

/// The TCP or UDP checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum L4Csum {
    Valid,
    /// The pseudo-header sum (left for offload).
    Partial,
    Value(u16),
}

/// How the IPv4 packet is bent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    Plain,
    /// Four bytes of options.
    Options,
    /// A total length shorter than the header.
    TotalShort(u8),
    /// Bytes after the IP packet (Ethernet padding).
    Padding(u8),
    /// A total length that ends inside the L4 header (the rest of the header is padding).
    L4Cut(u8),
    LaterFragment(u16),
    FirstFragment,
    /// The frame cut this many bytes before the total length's end.
    Truncated(u8),
}

/// A flow of a world: what its packets' kernel key is made of.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flow {
    pub(super) src: usize,
    /// Sent from another host's port (a move, or a spoof).
    pub(super) from: Option<usize>,
    pub(super) l2: L2Dst,
    pub(super) l3: L3Dst,
    pub(super) kind: Kind,
    pub(super) tag: Tag,
    pub(super) sport: u16,
    pub(super) dport: u16,
}

/// What one packet of a flow has of its own: fields outside the key, and bends that make
/// the key the workers read another.
#[derive(Debug, Clone, Copy)]
pub(super) struct Variation {
    /// The priority bits of its tag.
    pub(super) pcp: u8,
    pub(super) ttl: u8,
    pub(super) ip_id: u16,
    pub(super) tos: u8,
    /// The IPv4 header checksum: `None` for the right one.
    pub(super) ip_csum: Option<u16>,
    pub(super) l4_csum: L4Csum,
    pub(super) payload: usize,
    pub(super) fill: u8,
    pub(super) shape: Shape,
}

/// One packet of a world.
#[derive(Debug, Clone, Copy)]
pub(super) struct PacketSpec {
    pub(super) flow: Flow,
    pub(super) var: Variation,
}

impl Flow {
    /// A flow from host `src`, with its own tag, from port 1000 to 53.
    pub(super) fn new(src: usize, l2: L2Dst, l3: L3Dst, kind: Kind) -> Flow {
        Flow {
            src,
            from: None,
            l2,
            l3,
            kind,
            tag: Tag::Home,
            sport: 1000,
            dport: 53,
        }
    }

    /// A packet of the flow, well formed, TTL 64, 16 bytes of payload.
    pub(super) fn packet(self) -> PacketSpec {
        PacketSpec {
            flow: self,
            var: Variation {
                pcp: 0,
                ttl: 64,
                ip_id: 1,
                tos: 0,
                ip_csum: None,
                l4_csum: L4Csum::Valid,
                payload: 16,
                fill: 0,
                shape: Shape::Plain,
            },
        }
    }
}

impl PacketSpec {
    /// This packet with its variation changed by `change`.
    pub(super) fn with(mut self, change: impl FnOnce(&mut Variation)) -> PacketSpec {
        change(&mut self.var);
        self
    }
}

fn l2_dst() -> impl Strategy<Value = L2Dst> {
    prop_oneof![
        6 => (0..8usize).prop_map(L2Dst::Host),
        3 => (0..2usize).prop_map(L2Dst::Router),
        2 => Just(L2Dst::Broadcast),
        1 => Just(L2Dst::Multicast),
        1 => Just(L2Dst::Unknown),
    ]
}

fn l3_dst() -> impl Strategy<Value = L3Dst> {
    prop_oneof![
        6 => (0..8usize).prop_map(L3Dst::Host),
        2 => (0..2usize).prop_map(L3Dst::Router),
        1 => Just(L3Dst::Far),
        1 => Just(L3Dst::Unrouted),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just(Kind::Udp),
        6 => Just(Kind::Tcp),
        3 => (prop::sample::select(vec![0u8, 3, 8, 11]), 0..2u8)
            .prop_map(|(icmp_type, code)| Kind::Icmp { icmp_type, code }),
        1 => prop::sample::select(vec![47u8, 50, 132]).prop_map(Kind::OtherIp),
        2 => Just(Kind::Udp6),
        1 => Just(Kind::Tcp6),
        1 => Just(Kind::Ns6),
        1 => Just(Kind::Echo6),
        2 => Just(Kind::ArpRequest),
        1 => Just(Kind::ArpReply),
        1 => Just(Kind::Raw),
    ]
}

fn tag() -> impl Strategy<Value = Tag> {
    prop_oneof![
        10 => Just(Tag::Home),
        1 => Just(Tag::Untagged),
        // Priority-tagged: in the port's untagged VLAN, and retagged to leave tagged.
        2 => Just(Tag::Vid(0)),
        2 => prop::sample::select(vec![10u16, 20, 30, 40]).prop_map(Tag::Vid),
        1 => prop::sample::select(vec![10u16, 20]).prop_map(Tag::Service),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        20 => Just(Shape::Plain),
        1 => Just(Shape::Options),
        1 => (0..20u8).prop_map(Shape::TotalShort),
        2 => (1..40u8).prop_map(Shape::Padding),
        1 => (0..20u8).prop_map(Shape::L4Cut),
        1 => (1..0x1fffu16).prop_map(Shape::LaterFragment),
        1 => Just(Shape::FirstFragment),
        1 => (1..8u8).prop_map(Shape::Truncated),
    ]
}

fn checksum_value() -> impl Strategy<Value = u16> {
    // The values where ones' complement arithmetic has its corners.
    prop_oneof![
        Just(0u16),
        Just(0xffff),
        Just(0xfeff),
        Just(0xff00),
        Just(0x00ff),
        Just(0x0100),
        any::<u16>(),
    ]
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        0..8usize,
        prop::option::weighted(0.05, 0..8usize),
        l2_dst(),
        l3_dst(),
        kind(),
        tag(),
        prop::sample::select(vec![1000u16, 1001]),
        prop::sample::select(vec![53u16, 80, 443]),
    )
        .prop_map(|(src, from, l2, l3, kind, tag, sport, dport)| Flow {
            src,
            from,
            l2,
            l3,
            kind,
            tag,
            sport,
            dport,
        })
}

fn variation() -> impl Strategy<Value = Variation> {
    (
        0..8u8,
        prop::sample::select(vec![0u8, 1, 2, 64, 255]),
        any::<u16>(),
        any::<u8>(),
        prop::option::weighted(0.3, checksum_value()),
        prop_oneof![
            4 => Just(L4Csum::Valid),
            3 => Just(L4Csum::Partial),
            1 => checksum_value().prop_map(L4Csum::Value),
        ],
        prop_oneof![8 => 0..64usize, 1 => 64..1500usize, 1 => 2020..2100usize],
        any::<u8>(),
        shape(),
    )
        .prop_map(
            |(pcp, ttl, ip_id, tos, ip_csum, l4_csum, payload, fill, shape)| Variation {
                pcp,
                ttl,
                ip_id,
                tos,
                ip_csum,
                l4_csum,
                payload,
                fill,
                shape,
            },
        )
}

/// Packets of a few flows, so that later packets meet the kernel entries earlier ones
/// installed.
pub(super) fn packets() -> impl Strategy<Value = Vec<PacketSpec>> {
    (
        prop::collection::vec(flow(), 1..6),
        prop::collection::vec((any::<prop::sample::Index>(), variation()), 1..32),
    )
        .prop_map(|(flows, sequence)| {
            sequence
                .into_iter()
                .map(|(i, var)| PacketSpec {
                    flow: *i.get(&flows),
                    var,
                })
                .collect()
        })
}

/// A frame as it arrives on a port.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    pub(super) port: PortId,
    pub(super) frame: Vec<u8>,
    /// The skb's TCP/UDP checksum is left for offload (a veth port's frame).
    pub(super) csum_partial: bool,
}

impl World {
    /// The frame host `p.flow.src` sends, and where it arrives.
    pub(super) fn frame(&self, at: &Addressing, p: &PacketSpec) -> Arrival {
        let n = self.hosts.len();
        let src = p.flow.src % n;
        let host = self.host_port(p.flow.from.unwrap_or(src));
        let iface = |k: usize| {
            if self.ifaces.is_empty() {
                None
            } else {
                Some(k % self.ifaces.len())
            }
        };
        let dst_mac = match p.flow.l2 {
            L2Dst::Host(j) => at.macs[j % n],
            L2Dst::Router(k) => iface(k).map_or(at.macs[(src + 1) % n], router_mac),
            L2Dst::Broadcast => EthernetAddress::BROADCAST,
            L2Dst::Multicast => EthernetAddress([1, 0, 0x5e, 0, 0, 0xfb]),
            L2Dst::Unknown => EthernetAddress([2, 0, 0, 0, 0, 0xee]),
        };
        let dst_ip = match p.flow.l3 {
            L3Dst::Host(j) => at.ips[j % n],
            L3Dst::Router(k) => iface(k).map_or(at.ips[(src + 1) % n], router_ip),
            L3Dst::Far => Ipv4Addr::new(192, 168, 7, 7),
            L3Dst::Unrouted => Ipv4Addr::new(172, 31, 0, 1),
        };
        let dst_ip6 = match p.flow.l3 {
            L3Dst::Host(j) => at.ip6s[j % n],
            L3Dst::Router(k) => iface(k).map_or(at.ip6s[(src + 1) % n], router_ip6),
            L3Dst::Far | L3Dst::Unrouted => Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 1),
        };
        let (src_mac, src_ip, src_ip6) = (at.macs[src], at.ips[src], at.ip6s[src]);
        let payload: Vec<u8> = (0..p.var.payload)
            .map(|i| p.var.fill.wrapping_add((i * 7) as u8))
            .collect();
        let mut csum_partial = false;
        let (ethertype, mut dst_mac, l3) = match p.flow.kind {
            Kind::Udp | Kind::Tcp | Kind::Icmp { .. } | Kind::OtherIp(_) => {
                let (bytes, partial) = self.ipv4(p, src_ip, dst_ip, &payload);
                csum_partial = partial;
                (0x0800, dst_mac, bytes)
            }
            Kind::Udp6 | Kind::Tcp6 => {
                let proto = if matches!(p.flow.kind, Kind::Udp6) {
                    17
                } else {
                    6
                };
                let mut l4 = l4_segment(p, proto, &payload);
                let pseudo = checksum::pseudo_header_v6(src_ip6, dst_ip6, proto, l4.len() as u32);
                csum_partial = set_l4_csum(&mut l4, p.var.l4_csum, pseudo, proto);
                let mut bytes = vec![0u8; 40];
                ipv6::emit(
                    &mut bytes,
                    src_ip6,
                    dst_ip6,
                    proto,
                    l4.len() as u16,
                    p.var.ttl,
                );
                bytes.extend_from_slice(&l4);
                (0x86dd, dst_mac, bytes)
            }
            Kind::Ns6 => {
                let t = dst_ip6.octets();
                let group = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | u16::from(t[13]),
                    u16::from_be_bytes([t[14], t[15]]),
                );
                let mut body = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
                body.extend_from_slice(&t);
                body.extend_from_slice(&[1, 1]);
                body.extend_from_slice(&src_mac.0);
                let to_router = matches!(p.flow.l2, L2Dst::Router(_)) && !self.ifaces.is_empty();
                let ip_dst = if to_router { dst_ip6 } else { group };
                let pseudo = checksum::pseudo_header_v6(src_ip6, ip_dst, 58, body.len() as u32);
                checksum::fill(&mut body, pseudo, 2, false);
                let mut bytes = vec![0u8; 40];
                ipv6::emit(&mut bytes, src_ip6, ip_dst, 58, body.len() as u16, 255);
                bytes.extend_from_slice(&body);
                let mac = if to_router {
                    dst_mac
                } else {
                    EthernetAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]])
                };
                (0x86dd, mac, bytes)
            }
            Kind::Echo6 => {
                let mut body = vec![128u8, 0, 0, 0, 0, 1, 0, 1];
                body.extend_from_slice(&payload);
                let pseudo = checksum::pseudo_header_v6(src_ip6, dst_ip6, 58, body.len() as u32);
                checksum::fill(&mut body, pseudo, 2, false);
                let mut bytes = vec![0u8; 40];
                ipv6::emit(
                    &mut bytes,
                    src_ip6,
                    dst_ip6,
                    58,
                    body.len() as u16,
                    p.var.ttl,
                );
                bytes.extend_from_slice(&body);
                (0x86dd, dst_mac, bytes)
            }
            Kind::ArpRequest | Kind::ArpReply => {
                let mut bytes = vec![0u8; arp::PACKET_LEN];
                let (op, tha) = match p.flow.kind {
                    Kind::ArpRequest => (arp::OP_REQUEST, EthernetAddress([0; 6])),
                    _ => (2, dst_mac),
                };
                arp::emit(&mut bytes, op, src_mac, src_ip, tha, dst_ip);
                (0x0806, dst_mac, bytes)
            }
            Kind::Raw => {
                let mut bytes = vec![0u8; 46];
                bytes[..payload.len().min(46)].copy_from_slice(&payload[..payload.len().min(46)]);
                (0x88b6, dst_mac, bytes)
            }
        };
        if matches!(p.flow.kind, Kind::ArpRequest) && matches!(p.flow.l2, L2Dst::Host(_)) {
            // Requests are broadcast, but for refreshes.
            dst_mac = EthernetAddress::BROADCAST;
        }
        let mut frame = Vec::with_capacity(l3.len() + 22);
        frame.extend_from_slice(&dst_mac.0);
        frame.extend_from_slice(&src_mac.0);
        let pcp = u16::from(p.var.pcp) << 13;
        match p.flow.tag {
            Tag::Home => {
                if let Some(vid) = host.tag {
                    frame.extend_from_slice(&0x8100u16.to_be_bytes());
                    frame.extend_from_slice(&(pcp | vid).to_be_bytes());
                }
            }
            Tag::Untagged => {}
            Tag::Vid(vid) => {
                frame.extend_from_slice(&0x8100u16.to_be_bytes());
                frame.extend_from_slice(&(pcp | vid).to_be_bytes());
            }
            Tag::Service(vid) => {
                frame.extend_from_slice(&0x88a8u16.to_be_bytes());
                frame.extend_from_slice(&(pcp | vid).to_be_bytes());
            }
        }
        frame.extend_from_slice(&u16::to_be_bytes(ethertype));
        frame.extend_from_slice(&l3);
        if let Shape::Padding(n) = p.var.shape {
            frame.extend((0..n).map(|i| p.var.fill ^ i));
        }
        let port = &self.ports[usize::from(host.port) - 1];
        Arrival {
            port: host.port,
            frame,
            // A frame with the pseudo-header sum is one left for offload only on a veth;
            // elsewhere it is a checksum that happens to look like one.
            csum_partial: csum_partial && port.veth,
        }
    }

    /// An IPv4 packet; and whether its L4 checksum was left for offload.
    fn ipv4(
        &self,
        p: &PacketSpec,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
    ) -> (Vec<u8>, bool) {
        let proto = match p.flow.kind {
            Kind::Udp => 17,
            Kind::Tcp => 6,
            Kind::Icmp { .. } => 1,
            Kind::OtherIp(proto) => proto,
            _ => unreachable!("IPv4 kinds"),
        };
        let mut l4 = l4_segment(p, proto, payload);
        let pseudo = checksum::pseudo_header_v4(src, dst, proto, l4.len() as u16);
        // A stack leaves checksums for offload in whole packets only.
        let whole = matches!(
            p.var.shape,
            Shape::Plain | Shape::Padding(_) | Shape::Options
        );
        let mode = match p.var.l4_csum {
            L4Csum::Partial if !whole => L4Csum::Valid,
            mode => mode,
        };
        let partial = set_l4_csum(&mut l4, mode, pseudo, proto);
        let options = if matches!(p.var.shape, Shape::Options) {
            4
        } else {
            0
        };
        let mut header = vec![0u8; 20];
        ipv4::emit(&mut header, src, dst, proto, l4.len() as u16, p.var.ttl);
        header[1] = p.var.tos;
        header[4..6].copy_from_slice(&p.var.ip_id.to_be_bytes());
        if options > 0 {
            header[0] = 0x46;
            header.extend_from_slice(&[1, 1, 1, 0]);
        }
        let mut total = header.len() + l4.len();
        let mut frag = 0x4000u16;
        match p.var.shape {
            Shape::TotalShort(t) => total = usize::from(t),
            Shape::L4Cut(n) => {
                let need = match proto {
                    6 => 20,
                    17 | 1 => 8,
                    _ => 8,
                };
                total = header.len() + usize::from(n) % need.min(l4.len().max(1));
            }
            Shape::LaterFragment(offset) => frag = offset,
            Shape::FirstFragment => frag = 0x2000,
            _ => {}
        }
        header[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        header[6..8].copy_from_slice(&frag.to_be_bytes());
        header[10..12].fill(0);
        let header_sum = !checksum::fold(checksum::sum(&header));
        header[10..12].copy_from_slice(&p.var.ip_csum.unwrap_or(header_sum).to_be_bytes());
        let mut bytes = header;
        bytes.extend_from_slice(&l4);
        if let Shape::Truncated(n) = p.var.shape {
            let keep = bytes.len().saturating_sub(usize::from(n)).max(20 + options);
            bytes.truncate(keep);
        }
        (bytes, partial)
    }
}

/// The L4 header and payload of a packet of `proto`, its checksum field zero.
fn l4_segment(p: &PacketSpec, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut l4 = match proto {
        17 => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&p.flow.sport.to_be_bytes());
            h[2..4].copy_from_slice(&p.flow.dport.to_be_bytes());
            h[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            h
        }
        6 => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&p.flow.sport.to_be_bytes());
            h[2..4].copy_from_slice(&p.flow.dport.to_be_bytes());
            h[4..8].copy_from_slice(&u32::from(p.var.ip_id).to_be_bytes());
            h[12] = 0x50;
            h[13] = 0x18;
            h[14..16].copy_from_slice(&512u16.to_be_bytes());
            h
        }
        1 => {
            let (icmp_type, code) = match p.flow.kind {
                Kind::Icmp { icmp_type, code } => (icmp_type, code),
                _ => (8, 0),
            };
            let mut h = vec![icmp_type, code, 0, 0, 0, 7, 0, 1];
            h.extend_from_slice(payload);
            let sum = !checksum::fold(checksum::sum(&h));
            h[2..4].copy_from_slice(&sum.to_be_bytes());
            return h;
        }
        _ => Vec::new(),
    };
    l4.extend_from_slice(payload);
    l4
}

/// Writes the TCP or UDP checksum as `mode` says; returns whether it was left for offload.
fn set_l4_csum(l4: &mut [u8], mode: L4Csum, pseudo: u32, proto: u8) -> bool {
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    match mode {
        L4Csum::Valid => checksum::fill(l4, pseudo, at, proto == 17),
        L4Csum::Partial => l4[at..at + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes()),
        L4Csum::Value(v) => {
            // Not one that looks left for offload: which one is, only the skb knows (a
            // wrong checksum that looks so is finished by the workers, which cannot know).
            let folded = checksum::fold(pseudo);
            let looks_partial = v == folded || (v == 0 && folded == 0xffff && proto == 6);
            let v = if looks_partial { v ^ 0x0101 } else { v };
            l4[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
    mode == L4Csum::Partial
}

/// The frames that teach the switch where the hosts are before the packets under test:
/// each host's answer to its router (a neighbor), or a broadcast of its own.
pub(super) fn warm_up(world: &World, at: &Addressing) -> Vec<PacketSpec> {
    (0..world.hosts.len())
        .map(|h| {
            let flow = match at.iface[h] {
                Some(k) => Flow::new(h, L2Dst::Router(k), L3Dst::Router(k), Kind::ArpReply),
                None => Flow::new(h, L2Dst::Broadcast, L3Dst::Unrouted, Kind::Raw),
            };
            flow.packet().with(|v| v.payload = 0)
        })
        .collect()
}

/// A world's ports, for messages.
pub(super) fn describe(world: &World) -> String {
    let ports: Vec<String> = world
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "p{} {:?} {} untagged-vlan {}{}{}",
                i + 1,
                p.hook,
                p.vlan,
                untagged_vlan(&p.vlan),
                if p.veth { " veth" } else { "" },
                if p.target { "" } else { " no-devmap" },
            )
        })
        .collect();
    ports.join("; ")
}
