//! The header rewrites on static frames, each checksum recomputed from scratch after the
//! incremental update; truncated frames; and random frames (proptest).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{EditError, FrameBuf};
use crate::fuzzing::{Checksums, checksums};
use crate::wire::checksum;

/// 10.0.0.1:1000 -> 10.0.0.2:80 TCP, TOS 0x2a, TTL 64, 5 bytes of payload (odd length).
static IPV4_TCP: [u8; 59] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x2a,
    0x00, 0x2d, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x6b, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x03, 0xe8, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x50, 0x18,
    0xff, 0xff, 0x4f, 0xb5, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];

/// 10.0.0.1:1000 -> 10.0.0.2:53 UDP with a checksum, 5 bytes of payload.
static IPV4_UDP: [u8; 47] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x2a,
    0x00, 0x21, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x6c, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x03, 0xe8, 0x00, 0x35, 0x00, 0x0d, 0xa3, 0xe2, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];

/// The same UDP datagram, sent without a checksum (0).
static IPV4_UDP_NO_CHECKSUM: [u8; 47] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x2a,
    0x00, 0x21, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x6c, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x03, 0xe8, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];

/// 10.0.0.1 -> 10.0.0.2 ICMP echo request (no pseudo-header in its checksum).
static IPV4_ICMP: [u8; 46] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x2a,
    0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x14, 0x7d, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x08, 0x00, 0x19, 0x27, 0x00, 0x07, 0x00, 0x01, 0x70, 0x69, 0x6e, 0x67,
];

/// A UDP fragment at offset 1480: its payload is no UDP header.
static IPV4_LATER_FRAGMENT: [u8; 50] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x2a,
    0x00, 0x24, 0x12, 0x34, 0x00, 0xb9, 0x40, 0x11, 0x53, 0xb0, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00,
    0x00, 0x02, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10,
];

/// IPV4_TCP with an 802.1Q tag, VID 100.
static TAGGED_IPV4_TCP: [u8; 63] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x64,
    0x08, 0x00, 0x45, 0x2a, 0x00, 0x2d, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x6b, 0x0a, 0x00,
    0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0x03, 0xe8, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00,
    0x00, 0x00, 0x50, 0x18, 0xff, 0xff, 0x4f, 0xb5, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];

/// fd00::1:1000 -> fd00::2:80 TCP, traffic class 0xb8, flow label 0x12345, hop limit 64.
static IPV6_TCP: [u8; 77] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6b, 0x81,
    0x23, 0x45, 0x00, 0x17, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xe8, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00,
    0x00, 0x00, 0x50, 0x18, 0xff, 0xff, 0xd9, 0x21, 0x00, 0x00, 0x68, 0x65, 0x6c,
];

/// fd00::1:1000 -> fd00::2:53 UDP, 4 bytes of payload.
static IPV6_UDP: [u8; 66] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6b, 0x81,
    0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xe8, 0x00, 0x35, 0x00, 0x0c, 0x3c, 0xee, 0x61, 0x62,
    0x63, 0x64,
];

/// fd00::1 -> fd00::2 ICMPv6 echo request (pseudo-header in its checksum).
static IPV6_ICMPV6: [u8; 67] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6b, 0x81,
    0x23, 0x45, 0x00, 0x0d, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0x70, 0xda, 0x00, 0x07, 0x00, 0x01, 0x70, 0x69,
    0x6e, 0x67, 0x36,
];

/// IPV6_UDP behind a hop-by-hop options header.
static IPV6_HOP_BY_HOP_UDP: [u8; 74] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6b, 0x81,
    0x23, 0x45, 0x00, 0x14, 0x00, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x11, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8,
    0x00, 0x35, 0x00, 0x0c, 0x3c, 0xee, 0x61, 0x62, 0x63, 0x64,
];

/// A UDP fragment at offset 1480 behind a fragment header.
static IPV6_LATER_FRAGMENT: [u8; 78] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x6b, 0x81,
    0x23, 0x45, 0x00, 0x18, 0x2c, 0x40, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x11, 0x00, 0x05, 0xc8, 0x00, 0x00, 0xab, 0xcd, 0x01, 0x02,
    0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
];

const NEW_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 201);
const NEW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xabcd, 0, 0, 0, 0xfe, 0x9);

/// One of the rewrites, by name, so that tests can loop over them.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    IpSrc(IpAddr),
    IpDst(IpAddr),
    TpSrc(u16),
    TpDst(u16),
    Dscp(u8),
    Ecn(u8),
    Ttl(u8),
}

impl Rewrite {
    fn apply(self, frame: &mut FrameBuf<'_>) -> Result<(), EditError> {
        match self {
            Rewrite::IpSrc(a) => frame.set_ip_src(a),
            Rewrite::IpDst(a) => frame.set_ip_dst(a),
            Rewrite::TpSrc(p) => frame.set_tp_src(p),
            Rewrite::TpDst(p) => frame.set_tp_dst(p),
            Rewrite::Dscp(d) => frame.set_ip_dscp(d),
            Rewrite::Ecn(e) => frame.set_ip_ecn(e),
            Rewrite::Ttl(t) => frame.set_ip_ttl(t),
        }
    }
}

const ALL: [Rewrite; 9] = [
    Rewrite::IpSrc(IpAddr::V4(NEW_V4)),
    Rewrite::IpDst(IpAddr::V4(NEW_V4)),
    Rewrite::IpSrc(IpAddr::V6(NEW_V6)),
    Rewrite::IpDst(IpAddr::V6(NEW_V6)),
    Rewrite::TpSrc(0xbeef),
    Rewrite::TpDst(443),
    Rewrite::Dscp(46),
    Rewrite::Ecn(3),
    Rewrite::Ttl(5),
];

/// `frame` after `rewrite`, which must succeed.
fn rewritten(frame: &[u8], rewrite: Rewrite) -> Vec<u8> {
    let mut buffer = frame.to_vec();
    let mut edited = FrameBuf::new(&mut buffer, 0, frame.len()).unwrap();
    rewrite.apply(&mut edited).unwrap();
    buffer
}

const VALID_V4: Checksums = Checksums {
    ipv4_header: Some(true),
    l4: Some(true),
};
const VALID_V6: Checksums = Checksums {
    ipv4_header: None,
    l4: Some(true),
};

fn u16_at(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Every rewrite on an IPv4 frame with an L4 checksum: the field changes where it should, and
/// every checksum verifies from scratch.
fn check_ipv4(frame: &[u8], l3: usize, ports: bool) {
    assert_eq!(checksums(frame), VALID_V4, "valid to start with");
    let l4 = l3 + 20;
    for rewrite in ALL {
        let after = rewritten(frame, rewrite);
        assert_eq!(checksums(&after), VALID_V4, "{rewrite:?}");
        match rewrite {
            Rewrite::IpSrc(IpAddr::V4(a)) => assert_eq!(after[l3 + 12..l3 + 16], a.octets()),
            Rewrite::IpDst(IpAddr::V4(a)) => assert_eq!(after[l3 + 16..l3 + 20], a.octets()),
            Rewrite::IpSrc(_) | Rewrite::IpDst(_) => {
                assert_eq!(after, frame, "another family: a no-op")
            }
            Rewrite::TpSrc(p) if ports => assert_eq!(u16_at(&after, l4), p),
            Rewrite::TpDst(p) if ports => assert_eq!(u16_at(&after, l4 + 2), p),
            Rewrite::TpSrc(_) | Rewrite::TpDst(_) => assert_eq!(after, frame, "no ports"),
            Rewrite::Dscp(d) => assert_eq!(after[l3 + 1], (d << 2) | (frame[l3 + 1] & 3)),
            Rewrite::Ecn(e) => assert_eq!(after[l3 + 1], (frame[l3 + 1] & 0xfc) | e),
            Rewrite::Ttl(t) => assert_eq!(after[l3 + 8], t),
        }
    }
}

/// As [`check_ipv4`] for an IPv6 frame whose L4 header is at `l4`.
fn check_ipv6(frame: &[u8], l4: usize, ports: bool) {
    let l3 = 14;
    assert_eq!(checksums(frame), VALID_V6, "valid to start with");
    for rewrite in ALL {
        let after = rewritten(frame, rewrite);
        assert_eq!(checksums(&after), VALID_V6, "{rewrite:?}");
        let class = (after[l3] << 4) | (after[l3 + 1] >> 4);
        let old_class = (frame[l3] << 4) | (frame[l3 + 1] >> 4);
        match rewrite {
            Rewrite::IpSrc(IpAddr::V6(a)) => assert_eq!(after[l3 + 8..l3 + 24], a.octets()),
            Rewrite::IpDst(IpAddr::V6(a)) => assert_eq!(after[l3 + 24..l3 + 40], a.octets()),
            Rewrite::IpSrc(_) | Rewrite::IpDst(_) => {
                assert_eq!(after, frame, "another family: a no-op")
            }
            Rewrite::TpSrc(p) if ports => assert_eq!(u16_at(&after, l4), p),
            Rewrite::TpDst(p) if ports => assert_eq!(u16_at(&after, l4 + 2), p),
            Rewrite::TpSrc(_) | Rewrite::TpDst(_) => assert_eq!(after, frame, "no ports"),
            Rewrite::Dscp(d) => assert_eq!(class, (d << 2) | (old_class & 3)),
            Rewrite::Ecn(e) => assert_eq!(class, (old_class & 0xfc) | e),
            Rewrite::Ttl(t) => assert_eq!(after[l3 + 7], t),
        }
        if matches!(rewrite, Rewrite::Dscp(_) | Rewrite::Ecn(_)) {
            assert_eq!(after[l3] >> 4, 6, "the version stays");
            assert_eq!(
                after[l3 + 1] & 0x0f,
                frame[l3 + 1] & 0x0f,
                "the flow label stays"
            );
            assert_eq!(
                after[l3 + 2..l3 + 4],
                frame[l3 + 2..l3 + 4],
                "the flow label stays"
            );
        }
    }
}

#[test]
fn ipv4_tcp() {
    check_ipv4(&IPV4_TCP, 14, true);
}

#[test]
fn ipv4_udp_with_checksum() {
    check_ipv4(&IPV4_UDP, 14, true);
}

#[test]
fn ipv4_udp_without_checksum_stays_without() {
    assert_eq!(checksums(&IPV4_UDP_NO_CHECKSUM).l4, None);
    for rewrite in ALL {
        let after = rewritten(&IPV4_UDP_NO_CHECKSUM, rewrite);
        assert_eq!(
            u16_at(&after, 14 + 20 + 6),
            0,
            "{rewrite:?}: still no checksum"
        );
        assert_eq!(checksums(&after).ipv4_header, Some(true), "{rewrite:?}");
    }
}

#[test]
fn ipv4_icmp_has_no_pseudo_header() {
    check_ipv4(&IPV4_ICMP, 14, false);
    let after = rewritten(&IPV4_ICMP, Rewrite::IpDst(IpAddr::V4(NEW_V4)));
    assert_eq!(
        after[34..],
        IPV4_ICMP[34..],
        "the ICMP message is untouched"
    );
}

#[test]
fn tagged_ipv4_tcp() {
    check_ipv4(&TAGGED_IPV4_TCP, 18, true);
    let after = rewritten(&TAGGED_IPV4_TCP, Rewrite::TpDst(443));
    assert_eq!(after[..18], TAGGED_IPV4_TCP[..18], "the tag is untouched");
}

#[test]
fn ipv6_tcp_udp_icmpv6() {
    check_ipv6(&IPV6_TCP, 54, true);
    check_ipv6(&IPV6_UDP, 54, true);
    check_ipv6(&IPV6_ICMPV6, 54, false);
    // The flow label around the traffic class stays.
    let after = rewritten(&IPV6_TCP, Rewrite::Dscp(0x3f));
    assert_eq!(
        u32::from_be_bytes(after[14..18].try_into().unwrap()),
        0x6fc1_2345
    );
}

#[test]
fn ipv6_udp_behind_an_extension_header() {
    let l4 = 14 + 40 + 8;
    let pseudo = |frame: &[u8]| {
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap());
        let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&frame[38..54]).unwrap());
        checksum::pseudo_header_v6(src, dst, 17, (frame.len() - l4) as u32)
    };
    assert!(checksum::verify(
        &IPV6_HOP_BY_HOP_UDP[l4..],
        pseudo(&IPV6_HOP_BY_HOP_UDP)
    ));
    for rewrite in ALL {
        let after = rewritten(&IPV6_HOP_BY_HOP_UDP, rewrite);
        assert!(
            checksum::verify(&after[l4..], pseudo(&after)),
            "{rewrite:?}"
        );
    }
    assert_eq!(
        u16_at(
            &rewritten(&IPV6_HOP_BY_HOP_UDP, Rewrite::TpDst(443)),
            l4 + 2
        ),
        443
    );
}

#[test]
fn later_fragments_change_the_ip_header_only() {
    for rewrite in ALL {
        let after = rewritten(&IPV4_LATER_FRAGMENT, rewrite);
        assert_eq!(after[34..], IPV4_LATER_FRAGMENT[34..], "{rewrite:?}");
        assert_eq!(checksums(&after).ipv4_header, Some(true), "{rewrite:?}");
        let after = rewritten(&IPV6_LATER_FRAGMENT, rewrite);
        assert_eq!(after[54..], IPV6_LATER_FRAGMENT[54..], "{rewrite:?}");
    }
    let moved = rewritten(&IPV4_LATER_FRAGMENT, Rewrite::IpSrc(IpAddr::V4(NEW_V4)));
    assert_eq!(moved[26..30], NEW_V4.octets());
}

#[test]
fn udp_checksum_that_comes_out_zero_is_written_ffff() {
    // The source port for which the full checksum of IPV4_UDP would be 0.
    let l4 = 34;
    let pseudo = checksum::pseudo_header_v4(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        17,
        13,
    );
    let port = (0..=u16::MAX)
        .find(|&p| {
            let mut segment = IPV4_UDP[l4..].to_vec();
            segment[0..2].copy_from_slice(&p.to_be_bytes());
            segment[6..8].fill(0);
            !checksum::fold(pseudo + checksum::sum(&segment)) == 0
        })
        .expect("some port sums to 0xffff");
    let after = rewritten(&IPV4_UDP, Rewrite::TpSrc(port));
    assert_eq!(u16_at(&after, l4 + 6), 0xffff);
    assert_eq!(checksums(&after), VALID_V4);
}

#[test]
fn non_ip_frames_are_left_alone() {
    let mut arp = [0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    for rewrite in ALL {
        assert_eq!(rewritten(&arp, rewrite), arp, "{rewrite:?}");
    }
}

#[test]
fn truncated_frames_are_errors_and_left_alone() {
    let frames: [&[u8]; 11] = [
        &IPV4_TCP,
        &IPV4_UDP,
        &IPV4_UDP_NO_CHECKSUM,
        &IPV4_ICMP,
        &IPV4_LATER_FRAGMENT,
        &TAGGED_IPV4_TCP,
        &IPV6_TCP,
        &IPV6_UDP,
        &IPV6_ICMPV6,
        &IPV6_HOP_BY_HOP_UDP,
        &IPV6_LATER_FRAGMENT,
    ];
    for frame in frames {
        for len in 0..frame.len() {
            for rewrite in ALL {
                let mut buffer = frame[..len].to_vec();
                let mut edited = FrameBuf::new(&mut buffer, 0, len).unwrap();
                assert_eq!(
                    rewrite.apply(&mut edited),
                    Err(EditError::Truncated),
                    "{rewrite:?} on {len} of {} bytes",
                    frame.len()
                );
                assert_eq!(buffer, frame[..len], "{rewrite:?} on {len} bytes");
            }
        }
    }
}

#[test]
fn l4_headers_too_short_for_their_checksum() {
    // An IPv4 packet that says TCP but carries 10 bytes: no checksum field to update.
    let mut short = IPV4_TCP[..44].to_vec();
    short[16..18].copy_from_slice(&30u16.to_be_bytes());
    short[24..26].fill(0);
    let c = !checksum::fold(checksum::sum(&short[14..34]));
    short[24..26].copy_from_slice(&c.to_be_bytes());
    for rewrite in [Rewrite::IpSrc(IpAddr::V4(NEW_V4)), Rewrite::TpDst(1)] {
        let mut buffer = short.clone();
        let len = buffer.len();
        let mut edited = FrameBuf::new(&mut buffer, 0, len).unwrap();
        assert_eq!(rewrite.apply(&mut edited), Err(EditError::Truncated));
        assert_eq!(buffer, short);
    }
    // The IP header alone is still rewritable.
    assert_eq!(
        checksums(&rewritten(&short, Rewrite::Ttl(1))).ipv4_header,
        Some(true)
    );
}

/// A random IPv4 or IPv6, TCP or UDP frame with valid checksums, perhaps tagged.
fn random_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<(u16, u16, u8, u8)>(),
        proptest::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
    )
        .prop_map(
            |(v6, tcp, tagged, src, dst, (sport, dport, tos, ttl), payload, no_udp_sum)| {
                let protocol = if tcp { 6 } else { 17 };
                let mut segment = vec![0u8; if tcp { 20 } else { 8 }];
                segment[0..2].copy_from_slice(&sport.to_be_bytes());
                segment[2..4].copy_from_slice(&dport.to_be_bytes());
                if tcp {
                    segment[12] = 0x50;
                }
                segment.extend_from_slice(&payload);
                let len = segment.len();
                if !tcp {
                    segment[4..6].copy_from_slice(&(len as u16).to_be_bytes());
                }
                let at = if tcp { 16 } else { 6 };
                let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
                if tagged {
                    frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
                }
                if v6 {
                    let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
                    frame.extend_from_slice(&[0x86, 0xdd]);
                    let mut header = [0u8; 40];
                    crate::wire::ipv6::emit(&mut header, src, dst, protocol, len as u16, ttl);
                    header[0] |= tos >> 4;
                    header[1] |= tos << 4;
                    frame.extend_from_slice(&header);
                    let pseudo = checksum::pseudo_header_v6(src, dst, protocol, len as u32);
                    checksum::fill(&mut segment, pseudo, at, !tcp);
                } else {
                    let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
                    let dst = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
                    frame.extend_from_slice(&[0x08, 0x00]);
                    let mut header = [0u8; 20];
                    crate::wire::ipv4::emit(&mut header, src, dst, protocol, len as u16, ttl);
                    header[1] = tos;
                    let mut ip = crate::wire::ipv4::Packet::new_unchecked(&mut header[..]);
                    ip.fill_checksum();
                    frame.extend_from_slice(&header);
                    if tcp || !no_udp_sum {
                        let pseudo = checksum::pseudo_header_v4(src, dst, protocol, len as u16);
                        checksum::fill(&mut segment, pseudo, at, !tcp);
                    }
                }
                frame.extend_from_slice(&segment);
                frame
            },
        )
}

fn random_rewrite() -> impl Strategy<Value = Rewrite> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Rewrite::IpSrc(IpAddr::V4(a.into()))),
        any::<[u8; 4]>().prop_map(|a| Rewrite::IpDst(IpAddr::V4(a.into()))),
        any::<[u8; 16]>().prop_map(|a| Rewrite::IpSrc(IpAddr::V6(a.into()))),
        any::<[u8; 16]>().prop_map(|a| Rewrite::IpDst(IpAddr::V6(a.into()))),
        any::<u16>().prop_map(Rewrite::TpSrc),
        any::<u16>().prop_map(Rewrite::TpDst),
        (0u8..64).prop_map(Rewrite::Dscp),
        (0u8..4).prop_map(Rewrite::Ecn),
        any::<u8>().prop_map(Rewrite::Ttl),
    ]
}

proptest! {
    /// Random rewrites, one after another, on random frames: every checksum still verifies,
    /// computed from scratch (a UDP datagram without a checksum stays without one).
    #[test]
    fn rewrites_keep_random_frames_checksums_valid(
        frame in random_frame(),
        rewrites in proptest::collection::vec(random_rewrite(), 1..4),
    ) {
        let before = checksums(&frame);
        prop_assert_eq!(before.ipv4_header.unwrap_or(true), true);
        let mut after = frame.clone();
        for rewrite in rewrites {
            after = rewritten(&after, rewrite);
            prop_assert_eq!(checksums(&after), before, "after {:?}", rewrite);
        }
    }
}
