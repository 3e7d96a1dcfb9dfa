//! Worlds written out by hand: the decisions the kernel must not take (no entry installed),
//! and a regression test for each difference between the paths the generated worlds found.
//! Each runs through the same harness, so the kernel (model, and the real programs where
//! root may) and userspace are held to each other on every packet as well.

use flowtable::config::Binding;
use flowtable::{PortId, VlanMode};

use super::real::RealKernel;
use super::world::{
    Flow, HostSpec, Kind, L2Dst, L3Dst, L4Csum, PacketSpec, PortSpec, Shape, Tag, World, warm_up,
};
use super::{Entry, Harness};
use crate::fastpath::abi::{FLAG_DEC_TTL, FLAG_REWRITE_MACS, Verdict};
use crate::hook::HookKind;

fn xdp(vlan: VlanMode, veth: bool) -> PortSpec {
    PortSpec {
        hook: HookKind::Xdp,
        vlan,
        veth,
        target: true,
    }
}

fn tc() -> PortSpec {
    PortSpec {
        hook: HookKind::Tc,
        vlan: VlanMode::All,
        veth: true,
        target: true,
    }
}

fn host(port: PortId) -> HostSpec {
    HostSpec { port, tag: None }
}

fn world(ports: Vec<PortSpec>, hosts: Vec<HostSpec>, ifaces: Vec<Binding>) -> World {
    World {
        ports,
        hosts,
        ifaces,
        route: false,
        rules: Vec::new(),
    }
}

/// The real programs, or a note on stderr that only the model is compared.
fn real_kernel() -> Option<RealKernel> {
    if !xvs_testkit::is_root() {
        eprintln!(
            "{}: the model only (the real programs need root)",
            xvs_testkit::test_name()
        );
        return None;
    }
    RealKernel::new()
        .map_err(|e| eprintln!("{}: the model only ({e})", xvs_testkit::test_name()))
        .ok()
}

/// Runs the world's warm-up, then `packets`: the entry the offloader installs for each.
fn run(world: World, packets: &[PacketSpec]) -> Vec<Option<Entry>> {
    let real = real_kernel();
    let mut harness = Harness::new(world, real.as_ref());
    for packet in warm_up(&harness.world, &harness.addressing) {
        harness
            .packet(&packet)
            .unwrap_or_else(|e| panic!("warm-up {packet:?}: {e}"));
    }
    packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            harness
                .packet(p)
                .unwrap_or_else(|e| panic!("packet {i} {p:?}: {e}"))
        })
        .collect()
}

fn udp(src: usize, dst: usize) -> PacketSpec {
    Flow::new(src, L2Dst::Host(dst), L3Dst::Host(dst), Kind::Udp).packet()
}

fn routed(src: usize, dst: usize) -> PacketSpec {
    Flow::new(src, L2Dst::Router(0), L3Dst::Host(dst), Kind::Udp).packet()
}

#[test]
fn no_entry_for_what_the_kernel_cannot_do() {
    // p1, p2 XDP and p3 tc in VLAN 0 with a router on it; p4 an access port of VLAN 10.
    let w = world(
        vec![
            xdp(VlanMode::All, false),
            xdp(VlanMode::All, false),
            tc(),
            xdp(VlanMode::Access(10), false),
        ],
        vec![host(1), host(2), host(3), host(4)],
        vec![Binding::Vlan(0)],
    );
    let cases = [
        ("unicast to a learned host", udp(0, 1), true),
        (
            "broadcast, flooded to two ports",
            Flow::new(0, L2Dst::Broadcast, L3Dst::Host(1), Kind::Raw).packet(),
            false,
        ),
        (
            "an unknown destination, flooded",
            Flow::new(0, L2Dst::Unknown, L3Dst::Host(1), Kind::Udp).packet(),
            false,
        ),
        ("routed", routed(0, 1), true),
        ("routed, TTL 1", routed(0, 1).with(|v| v.ttl = 1), false),
        ("routed, TTL 0", routed(0, 1).with(|v| v.ttl = 0), false),
        (
            "no route",
            Flow::new(0, L2Dst::Router(0), L3Dst::Unrouted, Kind::Udp).packet(),
            false,
        ),
        (
            "a ping of the router",
            Flow::new(
                0,
                L2Dst::Router(0),
                L3Dst::Router(0),
                Kind::Icmp {
                    icmp_type: 8,
                    code: 0,
                },
            )
            .packet(),
            false,
        ),
        (
            "an ARP request for the router",
            Flow::new(0, L2Dst::Broadcast, L3Dst::Router(0), Kind::ArpRequest).packet(),
            false,
        ),
        ("to the port it came from", udp(0, 0), false),
        (
            "tagged on an access port",
            PacketSpec {
                flow: Flow {
                    tag: Tag::Vid(10),
                    ..Flow::new(3, L2Dst::Host(0), L3Dst::Host(0), Kind::Udp)
                },
                ..udp(3, 0)
            },
            false,
        ),
        (
            "IPv4 with options",
            udp(0, 1).with(|v| v.shape = Shape::Options),
            true,
        ),
    ];
    let packets: Vec<PacketSpec> = cases.iter().map(|c| c.1).collect();
    for ((what, _, offloaded), entry) in cases.iter().zip(run(w, &packets)) {
        assert_eq!(entry.is_some(), *offloaded, "{what}: {entry:x?}");
    }
}

#[test]
fn no_entry_for_rule_decisions_the_kernel_cannot_carry_out() {
    let mut w = world(
        vec![xdp(VlanMode::All, false), xdp(VlanMode::All, false), tc()],
        vec![host(1), host(2), host(3)],
        Vec::new(),
    );
    w.rules = vec![
        "priority=100,udp,tp_dst=53,actions=push_vlan:30,output:2".into(),
        "priority=100,udp,tp_dst=80,actions=mod_vlan_vid:20,output:2".into(),
        "priority=100,tcp,actions=output:2,output:3".into(),
        "priority=100,icmp,actions=drop".into(),
        "priority=100,dl_type=0x88b6,actions=drop".into(),
        "priority=1,actions=normal".into(),
    ];
    let tcp = Flow::new(0, L2Dst::Host(1), L3Dst::Host(1), Kind::Tcp).packet();
    let icmp = Flow::new(
        0,
        L2Dst::Host(1),
        L3Dst::Host(1),
        Kind::Icmp {
            icmp_type: 8,
            code: 0,
        },
    )
    .packet();
    let raw = Flow::new(0, L2Dst::Host(1), L3Dst::Host(1), Kind::Raw).packet();
    let to_80 = PacketSpec {
        flow: Flow {
            dport: 80,
            ..udp(0, 1).flow
        },
        ..udp(0, 1)
    };
    let entries = run(w, &[udp(0, 1), to_80, tcp, icmp, raw]);
    assert!(entries[0].is_none(), "a pushed tag");
    assert!(entries[1].is_none(), "a VID set by a rule");
    assert!(entries[2].is_none(), "two outputs");
    let drop = entries[3].expect("a rule's drop of IPv4");
    assert_eq!(drop.value.verdict, Verdict::Drop as u8);
    assert!(entries[4].is_none(), "a rule's drop of another EtherType");
}

#[test]
fn no_xdp_entry_to_a_port_outside_the_devmap() {
    let mut ports = vec![xdp(VlanMode::All, false), xdp(VlanMode::All, false), tc()];
    ports[1].target = false;
    let w = world(ports, vec![host(1), host(2), host(3)], Vec::new());
    let entries = run(w, &[udp(0, 1), udp(2, 1), udp(0, 2)]);
    assert!(
        entries[0].is_none(),
        "XDP to a port an XDP program cannot redirect to"
    );
    assert!(entries[1].is_some(), "tc redirects to any device");
    assert!(entries[2].is_some());
}

/// Found by the generated worlds: the programs added 0x0100 to the header checksum with the
/// end-around carry but kept a result of 0xffff, where the workers (RFC 1624, eqn. 3) and
/// the kernel's `ip_decrease_ttl` write 0: a checksum of 0xfeff left the two paths
/// different.
#[test]
fn a_decremented_ttl_never_leaves_a_negative_zero_checksum() {
    let w = world(
        vec![xdp(VlanMode::All, false), tc()],
        vec![host(1), host(2)],
        vec![Binding::Vlan(0)],
    );
    let corner = |p: PacketSpec| p.with(|v| v.ip_csum = Some(0xfeff));
    let packets = [
        corner(routed(0, 1)),
        corner(routed(0, 1)),
        corner(routed(1, 0)),
        corner(routed(1, 0)),
    ];
    for entry in run(w, &packets) {
        let entry = entry.expect("routed");
        assert_eq!(
            entry.value.flags & (FLAG_DEC_TTL | FLAG_REWRITE_MACS),
            FLAG_DEC_TTL | FLAG_REWRITE_MACS
        );
    }
}

/// Found by the generated worlds: with a router, a host's ARP request flooded to the one
/// other port of its VLAN became a kernel entry keyed on its MACs alone, and its next
/// request, for the router's address, was flooded by the kernel instead of answered.
#[test]
fn arp_requests_stay_in_userspace_where_a_router_may_answer() {
    let ports = || vec![xdp(VlanMode::All, false), xdp(VlanMode::All, false)];
    let hosts = || vec![host(1), host(2)];
    let for_host = Flow::new(0, L2Dst::Broadcast, L3Dst::Host(1), Kind::ArpRequest).packet();
    let for_router = Flow::new(0, L2Dst::Broadcast, L3Dst::Router(0), Kind::ArpRequest).packet();
    let entries = run(
        world(ports(), hosts(), vec![Binding::Vlan(0)]),
        &[for_host, for_router, for_host],
    );
    assert!(entries.iter().all(Option::is_none), "{entries:x?}");
    // Without a router, a flood to one port is the kernel's.
    let entries = run(world(ports(), hosts(), Vec::new()), &[for_host]);
    assert!(entries[0].is_some());
}

/// Found by the generated worlds: the XDP program finished a TCP or UDP checksum that held
/// the pseudo-header sum on every port, while the workers do so for veths only (elsewhere
/// such a checksum is a wrong one, to be left as it is).
#[test]
fn checksums_that_look_left_for_offload_are_finished_on_veths_only() {
    let w = world(
        vec![xdp(VlanMode::All, false), xdp(VlanMode::All, true)],
        vec![host(1), host(2)],
        Vec::new(),
    );
    let partial = |p: PacketSpec| p.with(|v| v.l4_csum = L4Csum::Partial);
    let packets = [
        partial(udp(0, 1)),
        partial(udp(0, 1)),
        partial(udp(1, 0)),
        partial(udp(1, 0)),
    ];
    assert!(run(w, &packets).iter().all(Option::is_some));
}

/// Found by the generated worlds: the XDP program read ports from bytes after the IPv4
/// total length (Ethernet padding), and the tc program took a header whose total length was
/// shorter than itself, where the workers read neither: the kernel keyed such frames as the
/// well-formed flow whose entry then carried them.
#[test]
fn the_programs_read_only_what_the_total_length_holds() {
    let w = world(
        vec![xdp(VlanMode::All, false), tc()],
        vec![host(1), host(2)],
        Vec::new(),
    );
    let cut = |p: PacketSpec| p.with(|v| v.shape = Shape::L4Cut(0));
    let short = |p: PacketSpec| p.with(|v| v.shape = Shape::TotalShort(10));
    let packets = [
        udp(0, 1),
        cut(udp(0, 1)),
        udp(1, 0),
        cut(udp(1, 0)),
        short(udp(1, 0)),
        short(udp(0, 1)),
    ];
    let entries = run(w, &packets);
    for i in [1, 3] {
        let key = entries[i].expect("a flow without ports").key;
        assert_eq!((key.tp_src, key.tp_dst), ([0; 2], [0; 2]));
    }
}

/// Found by the generated worlds: an IPv6 TCP or UDP checksum left for offload by a
/// container behind an XDP-hooked veth went out unfinished when the kernel forwarded the
/// flow (the program finishes IPv4's only); the workers finish it.
#[test]
fn ipv6_from_a_veths_xdp_program_stays_in_userspace() {
    let w = world(
        vec![xdp(VlanMode::All, true), xdp(VlanMode::All, false), tc()],
        vec![host(1), host(2), host(3)],
        Vec::new(),
    );
    let udp6 = |src, dst| {
        Flow::new(src, L2Dst::Host(dst), L3Dst::Host(dst), Kind::Udp6)
            .packet()
            .with(|v| v.l4_csum = L4Csum::Partial)
    };
    let entries = run(w, &[udp6(0, 1), udp6(1, 0), udp6(2, 1), udp6(2, 1)]);
    assert!(entries[0].is_none(), "from a veth's XDP");
    assert!(entries[1].is_some(), "from another device's XDP");
    assert!(
        entries[2].is_some(),
        "from tc: the skb keeps its partial checksum"
    );
}
