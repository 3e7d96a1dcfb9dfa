//! What the fuzz targets check, as plain functions: cargo-fuzz calls them on generated input
//! (`flowtable/fuzz`), and `tests/fuzz_corpus.rs` replays the checked-in corpora through the
//! same functions on stable, so a crash once found stays a failing test until it is fixed.
//!
//! Each function takes arbitrary bytes and panics when the property it checks does not hold.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use crate::action::Step;
use crate::config::{Binding, Config, PortConfig, PortSecurity};
use crate::edit::{EditError, FrameBuf};
use crate::flow_spec::{format_match, format_rule, parse_flow, parse_match};
use crate::key::{FlowKey, L3, finish_partial_checksum};
use crate::pipeline::Pipeline;
use crate::port::{EgressTag, PortId, VlanMode};
use crate::wire::ethernet::{self, HEADER_LEN, VLAN_TAG_LEN};
use crate::wire::ipv4::Protocol;
use crate::wire::{EtherType, EthernetAddress, checksum, ipv4, ipv6, upcall};

/// Room in front of a frame, as a UMEM chunk has it (for pushed tags and popped prefixes).
const HEADROOM: usize = 256;
/// Room behind a frame, for replies longer than their request (neighbor advertisements).
const TAILROOM: usize = 128;
/// Flow cache slots: few, so that entries are evicted and decided again.
const CACHE_SLOTS: usize = 16;
/// The MAC of the router interface on VLAN `vid`.
const fn router_mac(vid: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0xfe, vid])
}

/// Rules a fuzz input may switch on, one per bit of its first byte.
const RULES: [&str; 8] = [
    "priority=300,tcp,tp_dst=22,actions=drop",
    "priority=200,udp,nw_dst=10.2.0.0/24,actions=dec_ttl,output:2",
    "priority=100,in_port=4,actions=push_vlan:10,output:3",
    "priority=150,dl_vlan=20,actions=strip_vlan,normal",
    "priority=120,icmp,nw_dst=10.9.0.0/16,actions=route",
    "priority=110,arp,actions=flood",
    "priority=90,ip,nw_src=10.1.0.0/24,actions=mod_dl_src:02:00:00:00:00:99,mod_vlan_vid:20,output:5,normal",
    "priority=80,ipv6,actions=mod_dl_dst:02:00:00:00:00:98,route",
];

/// The switch every frame-pipeline input runs on: ports of every VLAN mode, router
/// interfaces on VLANs and on a port (IPv4 and IPv6), static routes, and the rules of
/// `RULES` whose bit is set in `rule_bits`.
///
/// | port | VLAN mode | security |
/// |---|---|---|
/// | 1 | access 10 | |
/// | 2 | access 20 | locked to 02:00:00:00:00:0b and :0c |
/// | 3 | trunk 10, 20, native 30 | |
/// | 4 | all (router interface 192.168.4.254/24 on it) | 20 broadcasts a second |
/// | 5 | access 20 | 2 MACs |
///
/// The loop guard trips at 100 broadcasts a second.
/// It learns at most 8 MACs, for 20 seconds each. The router's MACs are 02:00:00:00:fe:0a (VLAN 10: 10.1.0.254/24, fd00:10::fe/64),
/// 02:00:00:00:fe:14 (VLAN 20: 10.2.0.254/24, fd00:20::fe/64) and 02:00:00:00:fe:04 (port
/// 4); 10.9.0.0/16 goes via 10.2.0.1 and fd00:99::/48 via fd00:20::1.
pub fn fuzz_config(rule_bits: u8) -> Config {
    // A small MAC table with a short age limit, so that inputs reach eviction and aging.
    let mut config = Config::default();
    config.mac_capacity = 8;
    config.mac_max_age_ns = 20_000_000_000;
    let modes = [
        VlanMode::Access(10),
        VlanMode::Access(20),
        VlanMode::Trunk {
            allowed: vec![10, 20],
            native: Some(30),
        },
        VlanMode::All,
        VlanMode::Access(20),
    ];
    let host = |last: u8| EthernetAddress([2, 0, 0, 0, 0, last]);
    let securities = [
        PortSecurity::default(),
        PortSecurity {
            mac_lock: vec![host(0x0b), host(0x0c)],
            ..PortSecurity::default()
        },
        PortSecurity::default(),
        PortSecurity {
            storm_limit: Some(20),
            ..PortSecurity::default()
        },
        PortSecurity {
            mac_limit: Some(2),
            ..PortSecurity::default()
        },
    ];
    for ((id, vlan), security) in (1..).zip(modes).zip(securities) {
        config.set_port(PortConfig {
            id,
            name: format!("veth{id}"),
            mac: EthernetAddress([2, 0, 0, 0, 0xff, id as u8]),
            vlan,
            security,
        });
    }
    // Low enough for an input's broadcast to trip it.
    config.loop_guard_pps = 100;
    let ip = |text: &str| text.parse::<IpAddr>().expect("a literal address");
    let addresses = [
        (Binding::Vlan(10), "10.1.0.254", 24, router_mac(10)),
        (Binding::Vlan(10), "fd00:10::fe", 64, router_mac(10)),
        (Binding::Vlan(20), "10.2.0.254", 24, router_mac(20)),
        (Binding::Vlan(20), "fd00:20::fe", 64, router_mac(20)),
        (Binding::Port(4), "192.168.4.254", 24, router_mac(4)),
    ];
    for (binding, addr, len, mac) in addresses {
        config
            .add_address(binding, ip(addr), len, Some(mac))
            .expect("a valid address");
    }
    config
        .add_route(ip("10.9.0.0"), 16, ip("10.2.0.1"))
        .expect("a valid route");
    config
        .add_route(ip("fd00:99::"), 48, ip("fd00:20::1"))
        .expect("a valid route");
    for (bit, spec) in RULES.iter().enumerate() {
        if rule_bits & (1 << bit) != 0 {
            let flow = parse_flow(spec, &|_| None).expect("a valid rule");
            config.rules.insert(flow.into_rule(bit as u32 + 1));
        }
    }
    config
}

/// [`fuzz_config`], built once per choice of rules (building one takes longer than deciding
/// a few frames) and shared.
pub fn shared_config(rule_bits: u8) -> Arc<Config> {
    static CONFIGS: [OnceLock<Arc<Config>>; 256] = [const { OnceLock::new() }; 256];
    CONFIGS[usize::from(rule_bits)]
        .get_or_init(|| Arc::new(fuzz_config(rule_bits)))
        .clone()
}

/// One frame of a [`frame_pipeline`] input.
#[derive(Debug, Clone, Copy)]
struct Record<'a> {
    in_port: PortId,
    /// The frame starts with an upcall prefix (which says the port instead).
    prefixed: bool,
    /// Advance the clock past an aging sweep before this frame.
    tick: bool,
    /// Nanoseconds since the previous frame.
    gap: u64,
    frame: &'a [u8],
}

/// Moves the clock past `record`'s gap, and past a sweep of both pipelines if it asks.
fn advance(now: &mut u64, record: &Record<'_>, pipelines: [&mut Pipeline; 2]) {
    *now += record.gap;
    if record.tick {
        *now += 2 * crate::pipeline::SWEEP_INTERVAL_NS;
        for pipeline in pipelines {
            pipeline.tick(*now);
        }
    }
}

/// Splits an input into records: a control byte (bits 0–2: in-port 0–7, of which 1–5 exist;
/// bit 3: upcall prefix; bit 4: sweep first; bit 5: the previous frame again, no length and
/// bytes follow; bits 6–7: time step), then a big-endian 16-bit length and that many bytes
/// (fewer if the input ends).
fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut previous: &[u8] = &[];
    core::iter::from_fn(move || {
        let (&control, rest) = data.split_first()?;
        data = rest;
        let frame = if control & 0x20 != 0 {
            previous
        } else {
            let len = match data {
                [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
                _ => data.len(),
            };
            data = data.get(2..).unwrap_or_default();
            let (frame, rest) = data.split_at(len.min(data.len()));
            data = rest;
            frame
        };
        previous = frame;
        Some(Record {
            in_port: PortId::from(control & 0x07),
            prefixed: control & 0x08 != 0,
            tick: control & 0x10 != 0,
            gap: [1_000, 1_000_000, 100_000_000, 10_000_000_000][usize::from(control >> 6)],
            frame,
        })
    })
}

/// Frames through parsing and the whole pipeline, as a worker does it: the first byte
/// chooses the rules of [`fuzz_config`], then come frames (see `records`). For every frame:
///
/// - parsing never panics, fails only for frames shorter than an Ethernet header, and gives
///   a layout inside the frame;
/// - the decision of a pipeline with a flow cache equals that of the reference pipeline
///   without one, for the frame and for the same frame again right after it (a cache hit),
///   until a MAC address ages out or is evicted (see `forgotten`);
/// - every header rewrite (addresses of both families, ports, DSCP, ECN, TTL, with values
///   taken from the frame's last bytes) fails only as `Truncated` and then leaves the frame
///   alone, and keeps every checksum that verified before verifying (see `check_rewrites`);
/// - carrying the decision out (edits, copies for each output, each output's tag) never
///   panics, and neither do the solicitations the pipeline asks for.
///
/// # Panics
/// When one of those does not hold.
pub fn frame_pipeline(data: &[u8]) {
    let Some((&rule_bits, data)) = data.split_first() else {
        return;
    };
    let config = shared_config(rule_bits);
    let mut cached = Pipeline::new(config.clone(), CACHE_SLOTS);
    let mut reference = Pipeline::new(config.clone(), CACHE_SLOTS);
    reference.set_caching(false);
    let mut now = 1_000_000_000u64;
    for record in records(data).take(64) {
        advance(&mut now, &record, [&mut cached, &mut reference]);
        let mut buffer = vec![0u8; HEADROOM + record.frame.len() + TAILROOM];
        buffer[HEADROOM..HEADROOM + record.frame.len()].copy_from_slice(record.frame);
        let (mut offset, mut len, mut in_port) = (HEADROOM, record.frame.len(), record.in_port);
        if record.prefixed {
            // What a worker does to the frames of the upcall device.
            let Some((port, at, popped)) = upcall::pop(&mut buffer, offset, len) else {
                continue;
            };
            assert!(
                at + popped <= buffer.len(),
                "a popped frame inside its buffer"
            );
            (in_port, offset, len) = (port, at, popped);
        }
        let frame = &mut buffer[offset..offset + len];
        let (key, layout) = match FlowKey::extract(frame, in_port) {
            Ok(parsed) => parsed,
            Err(_) => {
                assert!(
                    frame.len() < HEADER_LEN + VLAN_TAG_LEN,
                    "only a frame shorter than its Ethernet header is refused"
                );
                continue;
            }
        };
        check_layout(frame.len(), &layout);
        finish_partial_checksum(frame, &key, &layout);
        check_rewrites(frame);
        let mut decision = None;
        for repeat in 0..2 {
            let time = now + repeat;
            let got = cached.decide(&key, len as u32, time).clone();
            let want = reference.decide(&key, len as u32, time).clone();
            if forgotten(&cached, &reference) == 0 {
                assert_eq!(got.steps(), want.steps(), "steps of {key:?}");
                assert_eq!(got.drop_reason(), want.drop_reason(), "drop of {key:?}");
                assert_eq!(got.rule(), want.rule(), "rule of {key:?}");
            }
            decision = Some(got);
        }
        if let Some(decision) = decision {
            execute(decision.steps(), &config, &mut buffer, offset, len);
        }
        for pipeline in [&mut cached, &mut reference] {
            for solicitation in pipeline.take_solicitations() {
                let mut out = [0u8; 128];
                let built = solicitation.build(&mut out);
                FlowKey::extract(&out[..built], 0).expect("a solicitation parses");
            }
            pipeline.take_events().for_each(drop);
        }
    }
}

/// How many MACs either pipeline has aged out or evicted. The two tables learn the same
/// addresses but not at the same moments: a cache hit skips learning, and the next sweep
/// refreshes the source with the time of the hit, so the table's aging queue gets that record
/// later, and out of time order. Which entry is evicted first, and when an entry expires
/// (the table promises "at most a quarter of the age limit late"), may then differ, and with
/// it the decision. Decisions are compared until the first address is forgotten.
fn forgotten(cached: &Pipeline, reference: &Pipeline) -> u64 {
    cached.stats().macs_expired + reference.stats().macs_expired
}

/// The layout [`FlowKey::extract`] gives lies inside the frame, in header order.
fn check_layout(frame_len: usize, layout: &crate::key::Layout) {
    let l3 = usize::from(layout.l3_offset);
    assert!(l3 <= frame_len, "L3 offset {l3} beyond {frame_len}");
    if layout.l3 != L3::None {
        let end = usize::from(layout.l3_end);
        assert!(l3 < end && end <= frame_len, "L3 end {end} in {frame_len}");
    }
    if layout.l4_offset != 0 {
        let l4 = usize::from(layout.l4_offset);
        assert!(
            l3 < l4 && l4 <= usize::from(layout.l3_end),
            "L4 offset {l4} after {l3}, up to {}",
            layout.l3_end
        );
    }
}

/// Carries out `steps` on the frame at `buffer[offset..offset + len]` as a worker does: edits
/// in order, each output a copy tagged as its port wants; stops at a failed edit.
fn execute(steps: &[Step], config: &Config, buffer: &mut [u8], offset: usize, len: usize) {
    let mut frame = FrameBuf::new(buffer, offset, len).expect("the frame is inside its buffer");
    let output = |bytes: &[u8], tag: Option<EgressTag>| {
        let mut copy = vec![0u8; HEADROOM + bytes.len()];
        copy[HEADROOM..].copy_from_slice(bytes);
        let mut out = FrameBuf::new(&mut copy, HEADROOM, bytes.len()).expect("room for the copy");
        if let Some(tag) = tag
            && out.apply_egress(tag).is_ok()
        {
            let _ = FlowKey::extract(out.bytes(), 0);
        }
    };
    for step in steps {
        let edited = match *step {
            Step::Output { tag, .. } => {
                output(frame.bytes(), tag);
                Ok(())
            }
            Step::Flood { vlan, except } => {
                for (_, tag) in config.flood_targets(vlan, except) {
                    output(frame.bytes(), Some(tag));
                }
                Ok(())
            }
            Step::FloodAll { .. } => Ok(()),
            Step::SetEthSrc(mac) => frame.set_eth_src(mac),
            Step::SetEthDst(mac) => frame.set_eth_dst(mac),
            Step::SetVlanVid(vid) => frame.set_vlan_vid(vid),
            Step::StripVlan => {
                frame.strip_vlan();
                Ok(())
            }
            Step::PushVlan(vid) => frame.push_vlan(vid),
            Step::DecTtl => frame.dec_ttl(),
            Step::ArpReply(mac) => frame.arp_reply(mac),
            Step::EchoReply(mac) => frame.echo_reply(mac),
            Step::NeighborAdvert(mac) => {
                frame.neighbor_advert(mac, |t| config.is_router_ip(IpAddr::V6(t)))
            }
            rewrite => apply_rewrite(&mut frame, rewrite),
        };
        if edited.is_err() {
            return;
        }
    }
}

/// Carries out a header-rewrite step (any other step is not one: nothing happens).
fn apply_rewrite(frame: &mut FrameBuf<'_>, step: Step) -> Result<(), EditError> {
    match step {
        Step::SetIpSrc(addr) => frame.set_ip_src(addr),
        Step::SetIpDst(addr) => frame.set_ip_dst(addr),
        Step::SetTpSrc(port) => frame.set_tp_src(port),
        Step::SetTpDst(port) => frame.set_tp_dst(port),
        Step::SetIpDscp(dscp) => frame.set_ip_dscp(dscp),
        Step::SetIpEcn(ecn) => frame.set_ip_ecn(ecn),
        Step::SetIpTtl(ttl) => frame.set_ip_ttl(ttl),
        _ => Ok(()),
    }
}

/// Every header rewrite on a copy of `frame`, with values from its last 16 bytes (which a
/// fuzzer steers): an error is `Truncated` and leaves the copy as it was; after a success,
/// each checksum that verified before still verifies, computed from scratch.
fn check_rewrites(frame: &[u8]) {
    let mut tail = [0u8; 16];
    let n = frame.len().min(16);
    tail[..n].copy_from_slice(&frame[frame.len() - n..]);
    let word = u16::from_be_bytes([tail[0], tail[1]]);
    let v4 = IpAddr::V4(Ipv4Addr::new(tail[0], tail[1], tail[2], tail[3]));
    let v6 = IpAddr::V6(Ipv6Addr::from(tail));
    let steps = [
        Step::SetIpSrc(v4),
        Step::SetIpDst(v4),
        Step::SetIpSrc(v6),
        Step::SetIpDst(v6),
        Step::SetTpSrc(word),
        Step::SetTpDst(!word),
        Step::SetIpDscp(tail[2]),
        Step::SetIpEcn(tail[3]),
        Step::SetIpTtl(tail[4]),
    ];
    let before = checksums(frame);
    for step in steps {
        let mut copy = frame.to_vec();
        let mut edited = FrameBuf::new(&mut copy, 0, frame.len()).expect("the whole buffer");
        match apply_rewrite(&mut edited, step) {
            Ok(()) => {
                let after = checksums(edited.bytes());
                if before.ipv4_header == Some(true) {
                    assert_eq!(after.ipv4_header, Some(true), "{step:?} on {frame:02x?}");
                }
                if before.l4 == Some(true) {
                    assert_eq!(after.l4, Some(true), "{step:?} on {frame:02x?}");
                }
            }
            Err(e) => {
                assert_eq!(e, EditError::Truncated, "{step:?} on {frame:02x?}");
                assert_eq!(copy, frame, "a failed {step:?} changed the frame");
            }
        }
    }
}

/// What a from-scratch computation says of a frame's checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksums {
    /// Whether the IPv4 header checksum verifies; `None` for a frame with no whole IPv4
    /// header.
    pub ipv4_header: Option<bool>,
    /// Whether the TCP, UDP, ICMP (on IPv4) or ICMPv6 (on IPv6) checksum verifies over the
    /// segment and, but for ICMP, the pseudo-header; `None` where there is no checksum to
    /// check: other protocols, fragments (the checksum covers the whole datagram), IPv6
    /// packets with extension headers, UDP with a zero checksum (none computed), a segment
    /// shorter than its checksum field.
    pub l4: Option<bool>,
}

/// Computes every checksum of `frame` from scratch, to check what edits did incrementally.
pub fn checksums(frame: &[u8]) -> Checksums {
    let mut result = Checksums::default();
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return result;
    };
    let packet = &frame[eth.header_len()..];
    let (protocol, segment, pseudo) = match eth.payload_ethertype() {
        EtherType::IPV4 => {
            let Ok(ip) = ipv4::Packet::new_checked(packet) else {
                return result;
            };
            result.ipv4_header = Some(ip.verify_checksum());
            let segment = &packet[ip.header_len()..usize::from(ip.total_len())];
            let protocol = ip.protocol();
            if ip.is_fragment() {
                return result;
            }
            let pseudo = match protocol {
                Protocol::ICMP => 0,
                _ => checksum::pseudo_header_v4(
                    ip.src_addr(),
                    ip.dst_addr(),
                    protocol,
                    segment.len() as u16,
                ),
            };
            (protocol, segment, pseudo)
        }
        EtherType::IPV6 => {
            let Ok(ip) = ipv6::Packet::new_checked(packet) else {
                return result;
            };
            let segment =
                &packet[ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(ip.payload_len())];
            let protocol = ip.next_header();
            let pseudo = checksum::pseudo_header_v6(
                ip.src_addr(),
                ip.dst_addr(),
                protocol,
                segment.len() as u32,
            );
            match protocol {
                Protocol::TCP | Protocol::UDP | Protocol::ICMPV6 => (protocol, segment, pseudo),
                _ => return result,
            }
        }
        _ => return result,
    };
    let at = match protocol {
        Protocol::TCP => 16,
        Protocol::UDP => 6,
        Protocol::ICMP | Protocol::ICMPV6 => 2,
        _ => return result,
    };
    let Some(field) = segment.get(at..at + 2) else {
        return result;
    };
    if protocol == Protocol::UDP && field == [0, 0] {
        return result;
    }
    result.l4 = Some(checksum::verify(segment, pseudo));
    result
}

/// Ports by name in [`flow_spec`] inputs.
fn port_by_name(name: &str) -> Option<PortId> {
    match name {
        "veth1" => Some(1),
        "veth2" => Some(2),
        "eth0" => Some(7),
        _ => None,
    }
}

fn port_name(port: PortId) -> Option<String> {
    match port {
        1 => Some("veth1".into()),
        2 => Some("veth2".into()),
        7 => Some("eth0".into()),
        _ => None,
    }
}

/// Flow text (UTF-8; other bytes are skipped) through the `add-flow` and `del-flows` parsers:
/// no panic; an error points inside the text; a flow that parses prints (with port names and
/// with numbers) as text that parses back to the same flow and prints the same again; a
/// match likewise.
///
/// # Panics
/// When one of those does not hold.
pub fn flow_spec(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match parse_flow(text, &port_by_name) {
        Ok(flow) => {
            let named = format_rule(&flow, &port_name);
            let numbered = flow.to_string();
            for printed in [&named, &numbered] {
                let back = parse_flow(printed, &port_by_name)
                    .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
                assert_eq!(back, flow, "{text:?} printed as {printed:?}");
            }
            let again = format_rule(&flow, &port_name);
            assert_eq!(again, named, "printing is stable");
        }
        Err(e) => check_error(text, e.offset(), &e.to_string()),
    }
    match parse_match(text, &port_by_name) {
        Ok(spec) => {
            let mut printed = format_match(&spec.pattern, &port_name);
            if let Some(priority) = spec.priority {
                printed = format!("priority={priority},{printed}");
            }
            if let Some(table) = spec.table {
                printed = format!("table={table},{printed}");
            }
            if let Some((value, mask)) = spec.cookie {
                printed = format!("cookie={value:#x}/{mask:#x},{printed}");
            }
            let back = parse_match(&printed, &port_by_name)
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
            assert_eq!(back, spec, "{text:?} printed as {printed:?}");
        }
        Err(e) => check_error(text, e.offset(), &e.to_string()),
    }
}

fn check_error(text: &str, offset: Option<usize>, message: &str) {
    assert!(!message.is_empty());
    if let Some(offset) = offset {
        assert!(
            offset <= text.len(),
            "{text:?}: error at {offset} beyond the text: {message}"
        );
    }
}

/// The rules of [`conntrack_pipeline`]: a stateful firewall over three tables, with zones, a
/// mark, related ICMP errors, and IPv6.
const CT_RULES: [&str; 12] = [
    "table=0,priority=100,arp,actions=normal",
    "table=0,priority=10,ip,in_port=1,actions=ct(zone=1,table=1)",
    "table=0,priority=10,ip,in_port=2,actions=ct(zone=1,table=1)",
    "table=0,priority=5,ip,actions=ct(table=1)",
    "table=0,priority=5,ipv6,actions=ct(table=1)",
    "table=1,priority=90,ct_state=+trk+new,in_port=1,actions=ct(commit,zone=1,exec(set_field:0x7->ct_mark)),resubmit(,2)",
    "table=1,priority=90,ct_state=+trk+new,in_port=3,actions=ct(commit),resubmit(,2)",
    "table=1,priority=90,ct_state=+trk+est,actions=resubmit(,2)",
    "table=1,priority=85,ct_state=+trk+rel,actions=resubmit(,2)",
    "table=1,priority=80,ct_state=+trk,actions=drop",
    "table=2,priority=20,ct_mark=0x7,actions=normal",
    "table=2,priority=10,actions=output:4",
];

/// Frames through a pipeline of `CT_RULES`, as a worker decides them (with the frame's
/// bytes, for TCP sequence numbers and ICMP errors' embedded headers); input as for
/// [`frame_pipeline`] without its first byte. For every frame, twice (the second may be a
/// cache hit): the decision of the cached pipeline equals that of the uncached reference, as
/// long as no connection and no MAC address has timed out in either, swept or not (a cache
/// hit refreshes them at the next sweep, not at once, and an input may skip sweeps for
/// minutes where a worker sweeps every second: timeouts may fall differently), for frames whose
/// headers the tracker can read (a malformed L4 header past the key's fields is invalid to
/// the tracker, but a cache hit does not ask it). Both trackers skip TCP window checks,
/// which a cached pipeline stops making for a connection once its packets may pass unseen.
///
/// # Panics
/// When the decisions differ.
pub fn conntrack_pipeline(data: &[u8]) {
    use crate::conntrack::{Conntrack, CtConfig};
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| {
            let mut config = Config::default();
            for id in 1..=4 {
                config.set_port(PortConfig {
                    id,
                    name: format!("p{id}"),
                    mac: EthernetAddress([2, 0, 0, 0, 0xf0, id as u8]),
                    vlan: VlanMode::All,
                    security: PortSecurity::default(),
                });
            }
            for (id, spec) in CT_RULES.iter().enumerate() {
                let flow = parse_flow(spec, &|_| None).expect("a valid rule");
                config.rules.insert(flow.into_rule(id as u32 + 1));
            }
            Arc::new(config)
        })
        .clone();
    let tracker = || {
        Box::new(Conntrack::new(CtConfig {
            check_windows: false,
            ..CtConfig::default()
        }))
    };
    let mut cached = Pipeline::new(config.clone(), CACHE_SLOTS);
    cached.set_conntrack(tracker());
    let mut reference = Pipeline::new(config, CACHE_SLOTS);
    reference.set_conntrack(tracker());
    reference.set_caching(false);
    let mut now = 1_000_000_000u64;
    for record in records(data).take(64) {
        advance(&mut now, &record, [&mut cached, &mut reference]);
        let frame = record.frame;
        let Ok((key, layout)) = FlowKey::extract(frame, record.in_port) else {
            continue;
        };
        // A segment whose L4 header is malformed past what the flow key reads (a TCP data
        // offset beyond the segment) is invalid to the tracker, but shares its key, and so a
        // cached or offloaded decision, with its connection's good segments: such packets are
        // not validated once a connection is established, as Linux's offloaded flows are not.
        let header_invalid = matches!(
            crate::conntrack::CtPacket::parse(frame, &key, &layout, 0).map(|p| p.l4),
            Some(crate::conntrack::CtL4::Invalid(_))
        );
        for repeat in 0..2 {
            let time = now + repeat;
            let got = cached.decide_frame(frame, &key, &layout, time).0.clone();
            let want = reference.decide_frame(frame, &key, &layout, time).0.clone();
            let dead = |p: &Pipeline| p.connections().iter().any(|c| c.expiry <= time);
            let timed_out = forgotten(&cached, &reference)
                + cached.conntrack_stats().expired
                + reference.conntrack_stats().expired;
            if timed_out == 0 && !dead(&cached) && !dead(&reference) && !header_invalid {
                assert_eq!(got.steps(), want.steps(), "steps of {key:?}");
                assert_eq!(got.drop_reason(), want.drop_reason(), "drop of {key:?}");
                assert_eq!(got.rules(), want.rules(), "rules of {key:?}");
            }
        }
        cached.take_events().for_each(drop);
        reference.take_events().for_each(drop);
    }
}
