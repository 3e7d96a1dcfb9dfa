//! Parsing on static frames and scenarios on hand-built packets.

use super::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use super::*;
use crate::key::FlowKey;

const S: u64 = 1_000_000_000;
const A: u128 = 0x0a00_0001;
const B: u128 = 0x0a00_0002;

// 10.0.0.1:40000 -> 10.0.0.2:80 SYN, seq 1000, window 64240, options MSS 1460, SACK-permitted,
// NOP, window scale 7, NOP, NOP.
static TCP_SYN_FRAME: [u8; 66] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0, 0, 52, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    0x9c, 0x40, 0, 80, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x80, 0x02, 0xfa, 0xf0, 0, 0, 0,
    0, // tcp
    2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 1, 1, // options
];

// 10.0.0.1:1000 -> 10.0.0.2:2000 UDP, 4 bytes payload.
static UDP_FRAME: [u8; 46] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, 1, 2, 3, 4, // udp
];

// 10.0.0.1 -> 10.0.0.2 ICMP echo request, id 0x1234, seq 1.
static ICMP_ECHO_FRAME: [u8; 42] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    8, 0, 0, 0, 0x12, 0x34, 0, 1, // icmp
];

// 10.0.0.2 -> 10.0.0.1 ICMP port unreachable about UDP_FRAME's datagram.
static ICMP_UNREACH_FRAME: [u8; 70] = [
    2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, // ethernet
    0x45, 0, 0, 56, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1, // ipv4
    3, 3, 0, 0, 0, 0, 0, 0, // icmp
    0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // inner ipv4
    0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, // inner udp
];

// fd00::1:40000 -> fd00::2:80 TCP SYN+ACK, seq 1, ack 1001, window 65535, no options.
static IPV6_TCP_FRAME: [u8; 74] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, // ethernet
    0x60, 0, 0, 0, 0, 20, 6, 64, // ipv6
    0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src
    0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // dst
    0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0x03, 0xe9, 0x50, 0x12, 0xff, 0xff, 0, 0, 0,
    0, // tcp
];

fn parse(frame: &[u8], zone: u16) -> Option<CtPacket> {
    let (key, layout) = FlowKey::extract(frame, 1).ok()?;
    CtPacket::parse(frame, &key, &layout, zone)
}

#[test]
fn parses_tcp_syn_with_options() {
    let p = parse(&TCP_SYN_FRAME, 7).unwrap();
    assert_eq!(
        p.tuple,
        ConnKey {
            zone: 7,
            ipv6: false,
            proto: 6,
            src: A,
            dst: B,
            src_port: 40000,
            dst_port: 80,
            icmp_id: 0,
        }
    );
    let CtL4::Tcp(seg) = p.l4 else {
        panic!("not tcp: {p:?}")
    };
    assert_eq!(seg.flags, SYN);
    assert_eq!((seg.seq, seg.ack, seg.window), (1000, 0, 64240));
    assert_eq!(seg.wscale, Some(7));
    assert_eq!(seg.payload_len, 0);
    assert!(!seg.from_key);
}

#[test]
fn parses_udp() {
    let p = parse(&UDP_FRAME, 0).unwrap();
    assert_eq!(p.l4, CtL4::Udp);
    assert_eq!((p.tuple.src, p.tuple.dst), (A, B));
    assert_eq!(
        (p.tuple.proto, p.tuple.src_port, p.tuple.dst_port),
        (17, 1000, 2000)
    );
}

#[test]
fn parses_icmp_echo() {
    let p = parse(&ICMP_ECHO_FRAME, 0).unwrap();
    assert_eq!(p.l4, CtL4::IcmpEcho { reply: false });
    assert_eq!(
        (p.tuple.src_port, p.tuple.dst_port, p.tuple.icmp_id),
        (8, 0, 0x1234)
    );
}

#[test]
fn parses_icmp_error_with_embedded_udp() {
    let p = parse(&ICMP_UNREACH_FRAME, 5).unwrap();
    let udp = parse(&UDP_FRAME, 5).unwrap();
    assert_eq!(p.l4, CtL4::IcmpError { inner: udp.tuple });
    assert_eq!((p.tuple.src, p.tuple.dst), (B, A));
    // Cut inside the embedded header: not readable, invalid.
    let mut short = ICMP_UNREACH_FRAME;
    short[17] = 52; // outer total length without the inner UDP header
    let p = parse(&short[..66], 5).unwrap();
    assert_eq!(p.l4, CtL4::Invalid(CtInvalid::BadIcmpError));
}

#[test]
fn parses_ipv6_tcp() {
    let p = parse(&IPV6_TCP_FRAME, 0).unwrap();
    assert!(p.tuple.ipv6);
    assert_eq!(p.tuple.src, 0xfd00_u128 << 112 | 1);
    assert_eq!(p.tuple.dst, 0xfd00_u128 << 112 | 2);
    let CtL4::Tcp(seg) = p.l4 else {
        panic!("not tcp: {p:?}")
    };
    assert_eq!(seg.flags, SYN | ACK);
    assert_eq!(
        (seg.seq, seg.ack, seg.window, seg.wscale),
        (1, 1001, 65535, None)
    );
}

#[test]
fn later_fragments_and_bad_headers_are_invalid() {
    let mut frag = UDP_FRAME;
    frag[20] = 0x00;
    frag[21] = 0x10; // offset 16 × 8
    assert_eq!(
        parse(&frag, 0).unwrap().l4,
        CtL4::Invalid(CtInvalid::Fragment)
    );
    let mut doff = TCP_SYN_FRAME;
    doff[46] = 0xf0; // 60-byte header in a 32-byte segment
    assert_eq!(
        parse(&doff, 0).unwrap().l4,
        CtL4::Invalid(CtInvalid::Malformed)
    );
    let mut ct = Conntrack::new(CtConfig::default());
    let v = ct.process(&parse(&frag, 0).unwrap(), true, None, 0);
    assert_eq!(v.state, state::TRK | state::INV);
    assert_eq!(ct.stats().invalid, 1);
    assert!(ct.is_empty());
}

#[test]
fn truncated_and_garbage_never_panic() {
    let frames: [&[u8]; 5] = [
        &TCP_SYN_FRAME,
        &UDP_FRAME,
        &ICMP_ECHO_FRAME,
        &ICMP_UNREACH_FRAME,
        &IPV6_TCP_FRAME,
    ];
    let mut ct = Conntrack::new(CtConfig::default());
    for frame in frames {
        let (key, layout) = FlowKey::extract(frame, 1).unwrap();
        for len in 0..frame.len() {
            // A cut frame under the whole frame's layout, and under its own.
            let _ = CtPacket::parse(&frame[..len], &key, &layout, 0);
            if let Some(p) = parse(&frame[..len], 0) {
                ct.process(&p, true, None, 0);
            }
        }
    }
    assert!(CtPacket::parse(&[], &FlowKey::default(), &crate::key::Layout::default(), 0).is_none());
}

// Hand-built packets for the scenarios.

fn tuple(zone: u16, proto: u8, src: u128, dst: u128, sport: u16, dport: u16) -> ConnKey {
    ConnKey {
        zone,
        ipv6: false,
        proto,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        icmp_id: 0,
    }
}

/// A TCP segment from `(address, port)` to `(address, port)`, window 65535, no payload.
fn tcp(
    zone: u16,
    (src, sport): (u128, u16),
    (dst, dport): (u128, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> CtPacket {
    CtPacket {
        tuple: tuple(zone, 6, src, dst, sport, dport),
        l4: CtL4::Tcp(TcpSegment {
            flags,
            seq,
            ack,
            window: 65535,
            wscale: None,
            payload_len: 0,
            from_key: false,
        }),
    }
}

fn with_payload(mut p: CtPacket, len: u32) -> CtPacket {
    if let CtL4::Tcp(seg) = &mut p.l4 {
        seg.payload_len = len;
    }
    p
}

/// A→B and B→A of one TCP connection, A:1000 → B:80, zone `zone`.
struct Flow {
    zone: u16,
    a_seq: u32,
    b_seq: u32,
}

impl Flow {
    fn a(&self, flags: u8) -> CtPacket {
        tcp(self.zone, (A, 1000), (B, 80), flags, self.a_seq, self.b_seq)
    }

    fn b(&self, flags: u8) -> CtPacket {
        tcp(self.zone, (B, 80), (A, 1000), flags, self.b_seq, self.a_seq)
    }
}

/// Runs the three-way handshake with commit; returns the flow after it.
fn handshake(ct: &mut Conntrack, zone: u16, now: u64) -> Flow {
    let mut f = Flow {
        zone,
        a_seq: 100,
        b_seq: 5000,
    };
    let v = ct.process(&f.a(SYN), true, None, now);
    assert_eq!(v.state, state::TRK | state::NEW);
    assert!(v.changed);
    f.a_seq += 1;
    let v = ct.process(&f.b(SYN | ACK), true, None, now);
    assert_eq!(v.state, state::TRK | state::EST | state::RPL);
    assert!(v.changed);
    f.b_seq += 1;
    let v = ct.process(&f.a(ACK), true, None, now);
    assert_eq!(v.state, state::TRK | state::EST);
    assert!(!v.changed);
    f
}

#[test]
fn handshake_then_established_both_ways() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let v = ct.process(&with_payload(f.a(ACK | PSH), 100), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST);
    let v = ct.process(&f.b(ACK), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST | state::RPL);
    assert_eq!(v.conn, Some(f.a(SYN).tuple));
    let entry = ct.get(&f.a(SYN).tuple).unwrap();
    assert_eq!(entry.state, "ESTABLISHED");
    assert_eq!(entry.expiry, S + CtConfig::default().tcp_established);
    assert_eq!(ct.stats().created, 1);
}

#[test]
fn retransmitted_syn_stays_new_and_uncommitted_stores_nothing() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = Flow {
        zone: 0,
        a_seq: 100,
        b_seq: 0,
    };
    let v = ct.process(&f.a(SYN), false, None, 0);
    assert_eq!(
        (v.state, v.conn, v.changed),
        (state::TRK | state::NEW, None, false)
    );
    assert!(ct.is_empty());
    ct.process(&f.a(SYN), true, None, 0);
    let v = ct.process(&f.a(SYN), true, None, S);
    assert_eq!(v.state, state::TRK | state::NEW);
    assert_eq!(v.conn, Some(f.a(SYN).tuple));
    assert!(!v.changed);
    assert_eq!(ct.len(), 1);
}

#[test]
fn syn_ack_fin_and_rst_open_nothing() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = Flow {
        zone: 0,
        a_seq: 1,
        b_seq: 1,
    };
    for flags in [SYN | ACK, FIN | ACK, RST, RST | ACK] {
        let v = ct.process(&f.a(flags), true, None, 0);
        assert_eq!(v.state, state::TRK | state::INV, "flags {flags:#x}");
    }
    assert!(ct.is_empty());
    assert_eq!(ct.stats().invalid, 4);
}

/// A stream already under way (a restarted switch, or one put in its path) is picked up by
/// its next ACK, as OVS and Linux do: committed as new, established by the other side's next
/// segment, its windows unchecked (their scale is unknown), and closed by FINs as any other.
#[test]
fn an_ack_picks_a_stream_up_mid_way() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = Flow {
        zone: 0,
        a_seq: 70_000,
        b_seq: 900_000,
    };
    let v = ct.process(&with_payload(f.a(ACK | PSH), 100), true, None, 0);
    assert_eq!(v.state, state::TRK | state::NEW);
    assert!(v.conn.is_some() && v.changed);
    assert!(ct.iter().next().is_some_and(|c| c.liberal));
    let v = ct.process(&with_payload(f.b(ACK), 60_000), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST | state::RPL);
    let v = ct.process(&f.a(ACK), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST);
    // Uncommitted, it leaves nothing.
    let mut other = Conntrack::new(CtConfig::default());
    assert_eq!(
        other.process(&f.b(ACK), false, None, 0).state,
        state::TRK | state::NEW
    );
    assert!(other.is_empty());
}

#[test]
fn bad_flag_combinations_are_invalid() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    for flags in [SYN | FIN, SYN | RST, 0, FIN, PSH] {
        let v = ct.process(&f.a(flags), true, None, 0);
        assert_eq!(v.state, state::TRK | state::INV, "flags {flags:#x}");
    }
    // The connection is untouched.
    assert_eq!(
        ct.process(&f.a(ACK), false, None, 0).state,
        state::TRK | state::EST
    );
}

#[test]
fn zones_isolate_tenants_with_identical_addresses() {
    let mut ct = Conntrack::new(CtConfig::default());
    handshake(&mut ct, 1, 0);
    let f2 = Flow {
        zone: 2,
        a_seq: 100,
        b_seq: 5000,
    };
    // The same reply in zone 2 has no connection there.
    assert_eq!(
        ct.process(&f2.b(SYN | ACK), true, None, 0).state,
        state::TRK | state::INV
    );
    assert_eq!(
        ct.process(&f2.a(SYN), true, Some((7, 0xff)), 0).state,
        state::TRK | state::NEW
    );
    assert_eq!(ct.len(), 2);
    let zone1 = tuple(1, 6, A, B, 1000, 80);
    assert_eq!(ct.get(&zone1).unwrap().mark, 0);
    let mut out = Vec::new();
    ct.flush(Some(2), &mut out);
    assert_eq!(out, vec![tuple(2, 6, A, B, 1000, 80)]);
    assert_eq!(ct.len(), 1);
}

#[test]
fn fin_both_ways_closes_and_syn_reopens() {
    let mut ct = Conntrack::new(CtConfig::default());
    let mut f = handshake(&mut ct, 0, 0);
    let v = ct.process(&f.a(FIN | ACK), false, None, S);
    assert_eq!((v.state, v.changed), (state::TRK | state::EST, false));
    f.a_seq += 1;
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "FIN_WAIT");
    let v = ct.process(&f.b(FIN | ACK), false, None, S);
    assert_eq!(
        (v.state, v.changed),
        (state::TRK | state::EST | state::RPL, false)
    );
    f.b_seq += 1;
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "TIME_WAIT");
    // The last ACK: both FINs acked, closed.
    let v = ct.process(&f.a(ACK), false, None, S);
    assert!(v.changed);
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "CLOSED");
    // A new SYN on the same ports ends it and starts a new one.
    let v = ct.process(
        &tcp(0, (A, 1000), (B, 80), SYN, 90_000, 0),
        true,
        None,
        2 * S,
    );
    assert_eq!(v.state, state::TRK | state::NEW);
    assert!(v.changed);
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "SYN_SENT");
}

#[test]
fn rst_closes_and_a_syn_after_it_is_new() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let v = ct.process(&f.b(RST), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST | state::RPL);
    assert!(v.changed);
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "CLOSED");
    // Without commit the old one is gone and nothing new is stored.
    let v = ct.process(&tcp(0, (A, 1000), (B, 80), SYN, 7, 0), false, None, S);
    assert_eq!(
        (v.state, v.conn, v.changed),
        (state::TRK | state::NEW, None, true)
    );
    assert!(ct.is_empty());
}

#[test]
fn rst_out_of_sequence_is_invalid() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let blind = tcp(0, (B, 80), (A, 1000), RST, f.b_seq + 40_000, 0);
    assert_eq!(
        ct.process(&blind, false, None, S).state,
        state::TRK | state::INV
    );
    assert_eq!(ct.get(&f.a(SYN).tuple).unwrap().state, "ESTABLISHED");
}

#[test]
fn out_of_window_segment_is_invalid_and_changes_nothing() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let far = with_payload(
        tcp(0, (A, 1000), (B, 80), ACK, f.a_seq + 1_000_000, f.b_seq),
        10,
    );
    let v = ct.process(&far, false, None, S);
    assert_eq!((v.state, v.conn), (state::TRK | state::INV, None));
    assert_eq!(ct.stats().invalid, 1);
    // In-window traffic still passes; the expiry did not move for the invalid one.
    assert_eq!(
        ct.get(&f.a(SYN).tuple).unwrap().expiry,
        CtConfig::default().tcp_established
    );
    let v = ct.process(&with_payload(f.a(ACK), 10), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST);
}

#[test]
fn window_scale_widens_the_window() {
    let mut ct = Conntrack::new(CtConfig::default());
    let mut syn = tcp(0, (A, 1000), (B, 80), SYN, 100, 0);
    let mut synack = tcp(0, (B, 80), (A, 1000), SYN | ACK, 5000, 101);
    for p in [&mut syn, &mut synack] {
        if let CtL4::Tcp(seg) = &mut p.l4 {
            seg.wscale = Some(7);
            seg.window = 1000;
        }
    }
    ct.process(&syn, true, None, 0);
    ct.process(&synack, true, None, 0);
    let mut ack = tcp(0, (A, 1000), (B, 80), ACK, 101, 5001);
    if let CtL4::Tcp(seg) = &mut ack.l4 {
        seg.window = 1000;
    }
    ct.process(&ack, false, None, 0);
    // B may send 1000 << 7 bytes past what A acked; without scaling 1000 would be the limit.
    let big = with_payload(tcp(0, (B, 80), (A, 1000), ACK, 5001, 101), 100_000);
    assert_eq!(
        ct.process(&big, false, None, 0).state,
        state::TRK | state::EST | state::RPL
    );
    let too_big = with_payload(tcp(0, (B, 80), (A, 1000), ACK, 105_001, 101), 100_000);
    assert_eq!(
        ct.process(&too_big, false, None, 0).state,
        state::TRK | state::INV
    );
}

#[test]
fn liberal_after_refresh() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let key = f.a(SYN).tuple;
    // A cache carried a lot of data unseen; then a segment far ahead reaches conntrack.
    ct.refresh(&key, 10 * S);
    let entry = ct.get(&key).unwrap();
    assert!(entry.liberal);
    assert_eq!(entry.expiry, 10 * S + CtConfig::default().tcp_established);
    let far = with_payload(
        tcp(
            0,
            (A, 1000),
            (B, 80),
            ACK,
            f.a_seq + 50_000_000,
            f.b_seq + 9_000_000,
        ),
        1000,
    );
    assert_eq!(
        ct.process(&far, false, None, 11 * S).state,
        state::TRK | state::EST
    );
    // The state machine still runs: a RST closes.
    let rst = tcp(0, (B, 80), (A, 1000), RST, 1, 0);
    let v = ct.process(&rst, false, None, 12 * S);
    assert!(v.changed);
    assert_eq!(ct.get(&key).unwrap().state, "CLOSED");
}

#[test]
fn expiry_by_state_timeout() {
    let config = CtConfig::default();
    let mut ct = Conntrack::new(config.clone());
    let syn = tcp(0, (A, 1), (B, 2), SYN, 1, 0);
    ct.process(&syn, true, None, 0);
    let mut out = Vec::new();
    ct.expire(config.tcp_syn_sent - 1, &mut out);
    assert!(out.is_empty());
    ct.expire(config.tcp_syn_sent, &mut out);
    assert_eq!(out, vec![syn.tuple]);
    assert!(ct.is_empty());
    assert_eq!(ct.stats().expired, 1);
    // A timed-out connection not yet swept counts as gone for `process`.
    ct.process(&syn, true, None, 0);
    let v = ct.process(&syn, false, None, config.tcp_syn_sent);
    assert_eq!(
        (v.state, v.conn, v.changed),
        (state::TRK | state::NEW, None, true)
    );
    assert!(ct.is_empty());
}

#[test]
fn size_cap_refuses_commits() {
    let mut ct = Conntrack::new(CtConfig {
        max_connections: 2,
        ..CtConfig::default()
    });
    for port in 1..=3 {
        let v = ct.process(&tcp(0, (A, port), (B, 80), SYN, 1, 0), true, None, 0);
        assert_eq!(v.state, state::TRK | state::NEW);
        assert_eq!(v.conn.is_some(), port <= 2);
    }
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.stats().full, 1);
    assert_eq!(ct.stats().connections, 2);
}

#[test]
fn mark_set_and_kept() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = Flow {
        zone: 0,
        a_seq: 100,
        b_seq: 5000,
    };
    let v = ct.process(&f.a(SYN), true, Some((0xab, 0xff)), 0);
    assert_eq!((v.mark, v.changed), (0xab, true));
    let v = ct.process(&f.b(SYN | ACK), false, Some((0x1, 0xffff_ffff)), 0);
    assert_eq!(v.mark, 0xab, "set_mark without commit is ignored");
    let v = ct.process(
        &tcp(0, (A, 1000), (B, 80), ACK, 101, 5001),
        true,
        Some((0xcd00, 0xff00)),
        0,
    );
    assert_eq!((v.mark, v.changed), (0xcdab, true));
    let v = ct.process(
        &tcp(0, (A, 1000), (B, 80), ACK, 101, 5001),
        true,
        Some((0xcd00, 0xff00)),
        0,
    );
    assert_eq!((v.mark, v.changed), (0xcdab, false));
    assert_eq!(ct.iter().next().unwrap().mark, 0xcdab);
}

#[test]
fn udp_first_single_multiple() {
    let config = CtConfig::default();
    let mut ct = Conntrack::new(config.clone());
    let out = CtPacket {
        tuple: tuple(0, 17, A, B, 1000, 53),
        l4: CtL4::Udp,
    };
    let back = CtPacket {
        tuple: out.tuple.reversed(),
        l4: CtL4::Udp,
    };
    assert_eq!(
        ct.process(&out, true, None, 0).state,
        state::TRK | state::NEW
    );
    assert_eq!(ct.get(&out.tuple).unwrap().state, "FIRST");
    assert_eq!(
        ct.process(&out, true, None, S).state,
        state::TRK | state::NEW
    );
    assert_eq!(ct.get(&out.tuple).unwrap().state, "SINGLE");
    let v = ct.process(&back, false, None, 2 * S);
    assert_eq!(
        (v.state, v.changed),
        (state::TRK | state::EST | state::RPL, true)
    );
    assert_eq!(
        ct.get(&out.tuple).unwrap().expiry,
        2 * S + config.udp_multiple
    );
    assert_eq!(
        ct.process(&out, false, None, 3 * S).state,
        state::TRK | state::EST
    );
}

#[test]
fn icmp_echo_and_related_error() {
    let mut ct = Conntrack::new(CtConfig::default());
    let echo = parse(&ICMP_ECHO_FRAME, 0).unwrap();
    let mut reply = echo;
    reply.tuple = echo.tuple.reversed();
    reply.l4 = CtL4::IcmpEcho { reply: true };
    assert_eq!(
        ct.process(&reply, true, None, 0).state,
        state::TRK | state::INV
    );
    assert_eq!(
        ct.process(&echo, true, None, 0).state,
        state::TRK | state::NEW
    );
    assert_eq!(
        ct.process(&reply, true, None, 0).state,
        state::TRK | state::EST | state::RPL
    );
    // An echo request from B to A with the same id is another connection, not a reply.
    let mut b_ping = echo;
    b_ping.tuple.src = B;
    b_ping.tuple.dst = A;
    assert_eq!(
        ct.process(&b_ping, false, None, 0).state,
        state::TRK | state::NEW
    );

    // The port unreachable about an untracked datagram is invalid; about a tracked one, related.
    let unreach = parse(&ICMP_UNREACH_FRAME, 0).unwrap();
    assert_eq!(
        ct.process(&unreach, false, None, 0).state,
        state::TRK | state::INV
    );
    let udp = parse(&UDP_FRAME, 0).unwrap();
    ct.process(&udp, true, Some((9, 9)), 0);
    let v = ct.process(&unreach, false, None, 0);
    assert_eq!(v.state, state::TRK | state::REL | state::RPL);
    assert_eq!((v.conn, v.mark), (Some(udp.tuple), 9));
    // In another zone it relates to nothing.
    let other_zone = parse(&ICMP_UNREACH_FRAME, 1).unwrap();
    assert_eq!(
        ct.process(&other_zone, false, None, 0).state,
        state::TRK | state::INV
    );
}

#[test]
fn from_key_traces_without_windows() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let (key, _) = FlowKey::extract(&TCP_SYN_FRAME, 1).unwrap();
    // TCP_SYN_FRAME is 10.0.0.1:40000 -> 10.0.0.2:80: no connection yet.
    let p = CtPacket::from_key(&key, 0).unwrap();
    let mut trace = ct.clone();
    assert_eq!(
        trace.process(&p, false, None, 0).state,
        state::TRK | state::NEW
    );
    let p = CtPacket {
        tuple: f.b(ACK).tuple,
        ..p
    };
    assert_eq!(
        trace.process(&p, false, None, 0).state,
        state::TRK | state::EST | state::RPL
    );
    let arp = FlowKey {
        dl_type: crate::wire::EtherType::ARP,
        ..key
    };
    assert!(CtPacket::from_key(&arp, 0).is_none());
}

/// A successor's tracker takes an established connection over and goes on with it: its
/// packets are `EST` both ways at once (the successor never saw the handshake), a FIN still
/// closes it; opening connections stay behind.
#[test]
fn saved_connections_go_on_in_another_tracker() {
    let mut ct = Conntrack::new(CtConfig::default());
    let f = handshake(&mut ct, 0, 0);
    let syn = f.a(SYN);
    let opening = CtPacket {
        tuple: ConnKey {
            src_port: 2000,
            ..syn.tuple
        },
        ..syn
    };
    ct.process(&opening, true, None, 0);
    assert_eq!(ct.len(), 2);
    let saved = ct.save(S);
    assert_eq!(saved.len(), 1, "only the established one: {saved:?}");
    assert!(saved[0].remaining_ns > 0 && saved[0].seen_reply);

    let mut next = Conntrack::new(CtConfig::default());
    assert_eq!(next.restore(&saved, 0), 1);
    assert_eq!(next.restore(&saved, 0), 0, "not twice");
    let v = next.process(&with_payload(f.b(ACK | PSH), 10_000), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST | state::RPL);
    let v = next.process(&f.a(ACK), false, None, S);
    assert_eq!(v.state, state::TRK | state::EST);
    next.process(&f.a(FIN | ACK), false, None, S);
    next.process(&f.b(FIN | ACK), false, None, S);
    let v = next.process(&f.a(ACK), false, None, S);
    assert!(v.changed, "closed");
    assert!(next.iter().all(|c| c.state != "ESTABLISHED"));
}
